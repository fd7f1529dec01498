// Largest live allocations at the heap's peak (t-gmax) of a DHAT profile, grouped by their first
// frames in the gateway or its crates. Used for the memory section of BENCHMARKS.md:
//
//   node bench/dhat-top.mjs dhat.json [rows=25] [sockets=1]     (bytes per socket when given)
import fs from "node:fs";

const [file, rows = "25", sockets = "1"] = process.argv.slice(2);
if (!file) {
  process.stderr.write("usage: dhat-top.mjs dhat.json [rows] [sockets]\n");
  process.exit(2);
}
const d = JSON.parse(fs.readFileSync(file, "utf8"));
const per = Number(sockets);
// The gateway's own crates first among the frames matched (socketio, engineio, relay, socket_gateway).
const crate = /socket_gateway|socketio::|engineio::|relay::|tungstenite|hyper|tokio|reqwest|redis|http::|bytes::/;
const sites = new Map();
let total = 0;
for (const pp of d.pps) {
  const gb = pp.gb ?? 0;
  if (!gb) continue;
  total += gb;
  const key =
    pp.fs
      .map((i) => d.ftbl[i])
      .filter((f) => crate.test(f))
      .slice(0, 3)
      .map((f) => (f.split(": ")[1] ?? f).replace(/\s*\(.*\)$/, "").replace(/<[^<>]*>/g, "<>").slice(0, 110))
      .join("  <-  ") || "(no crate frame)";
  const s = sites.get(key) ?? { bytes: 0, blocks: 0 };
  s.bytes += gb;
  s.blocks += pp.gbk ?? 0;
  sites.set(key, s);
}
const perUnit = (b) => (per > 1 ? `${(b / per).toFixed(0).padStart(6)} B/socket ` : "");
console.log(`heap at its peak: ${(total / 1024).toFixed(0)} KiB ${per > 1 ? `(${(total / per).toFixed(0)} B per socket)` : ""}`);
for (const [k, s] of [...sites].sort((a, b) => b[1].bytes - a[1].bytes).slice(0, Number(rows))) {
  console.log(`${(s.bytes / 1024).toFixed(0).padStart(8)} KiB ${perUnit(s.bytes)}${String(s.blocks).padStart(7)} blocks  ${k}`);
}
