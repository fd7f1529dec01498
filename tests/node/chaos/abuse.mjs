// Abusive clients for the fault matrix, all at once, while the normal load runs: slowloris on
// polling (headers and a POST body trickled a byte at a time) and on the WebSocket upgrade (the
// request's headers trickled, then a frame header trickled), a socket.io client that stops
// reading while a flood is sent to it, a flood of handshakes from one address, and oversized and
// malformed packets over WebSocket and polling. Each abuser counts what the server did to it.
import net from "node:net";
import { Emitter } from "@socket.io/redis-emitter";
import { Redis } from "ioredis";
import { encodeFrame, openRawWs } from "../lib/rawws.mjs";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A TCP connection from `localAddress` that writes `head` then one byte of `trickle` every `everyMs`. */
function trickle({ host, port, localAddress, head, trickle: tail, everyMs, until, counts, what }) {
  return new Promise((resolve) => {
    const sock = net.connect({ host, port, localAddress });
    let i = 0;
    let timer = null;
    const done = (how) => {
      clearInterval(timer);
      counts[`${what}: ${how}`] = (counts[`${what}: ${how}`] ?? 0) + 1;
      sock.destroy();
      resolve();
    };
    sock.on("error", () => done("error"));
    sock.on("data", (d) => {
      const status = /^HTTP\/1\.1 (\d{3})/.exec(d.toString("latin1"))?.[1];
      if (status) done(`answered ${status}`);
    });
    sock.on("close", () => done(Date.now() >= until ? "held until the end" : "closed by the server"));
    sock.on("connect", () => {
      sock.write(head);
      timer = setInterval(() => {
        if (Date.now() >= until) return done("held until the end");
        if (i < tail.length) sock.write(tail.subarray(i, ++i));
      }, everyMs);
    });
  });
}

/**
 * Runs every abuser against `gw` (a gateway, host:port) and `edge` (nginx, host:port) for `ms`.
 * `victim` = {cookie, userId} of a user whose one socket stops reading; `valkeyUrl` to flood it.
 * Resolves to {counts}.
 */
export async function runAbuse({ gw, edge, victim, valkeyUrl, ms = 30000, slowConns = 50, floodConcurrency = 20 }) {
  const until = Date.now() + ms;
  const counts = {};
  const count = (k, n = 1) => (counts[k] = (counts[k] ?? 0) + n);
  const [gwHost, gwPort] = gw.split(":");
  const [edgeHost, edgePort] = edge.split(":");
  const jobs = [];
  const src = "127.0.0.250"; // the abusers' own address

  // ---- slowloris: polling headers, a polling POST body, the upgrade's headers (direct and via nginx)
  const pollingHead = Buffer.from(`GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n`);
  const upgradeHead = Buffer.from(
    "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
  );
  const slowHeaders = Buffer.from("X-Slow: " + "a".repeat(10000));
  for (let k = 0; k < slowConns; k++) {
    const [host, port] = k % 2 ? [gwHost, gwPort] : [edgeHost, edgePort];
    const via = k % 2 ? "direct" : "nginx";
    jobs.push(trickle({ host, port, localAddress: src, head: pollingHead, trickle: slowHeaders, everyMs: 2000, until, counts, what: `slowloris polling headers (${via})` }));
    jobs.push(trickle({ host, port, localAddress: src, head: upgradeHead, trickle: slowHeaders, everyMs: 2000, until, counts, what: `slowloris upgrade headers (${via})` }));
  }
  // A polling POST whose body trickles: needs a session first.
  jobs.push(
    (async () => {
      for (let k = 0; k < slowConns / 5 && Date.now() < until; k++) {
        try {
          const hs = await fetch(`http://${gw}/socket.io/?EIO=4&transport=polling`, { signal: AbortSignal.timeout(5000) });
          const sid = JSON.parse((await hs.text()).slice(1)).sid;
          const head = Buffer.from(
            `POST /socket.io/?EIO=4&transport=polling&sid=${sid} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\n`,
          );
          await trickle({ host: gwHost, port: gwPort, localAddress: src, head, trickle: Buffer.alloc(100000, 0x34), everyMs: 1000, until, counts, what: "slowloris polling body" });
        } catch {
          count("slowloris polling body: handshake failed");
        }
      }
    })(),
  );
  // An upgraded WebSocket whose first frame header trickles.
  for (let k = 0; k < slowConns / 5; k++) {
    jobs.push(
      (async () => {
        try {
          const ws = await openRawWs(`http://${gw}`, "/socket.io/?EIO=4&transport=websocket", { timeoutMs: 10000 });
          if (ws.status !== 101) return count(`slow frame: upgrade answered ${ws.status}`);
          const frame = encodeFrame(1, "4".repeat(1000));
          let i = 0;
          const closed = new Promise((r) => ws.sock.once("close", r));
          while (Date.now() < until && !ws.sock.destroyed) {
            if (i < frame.length) ws.sock.write(frame.subarray(i, ++i));
            await Promise.race([sleep(2000), closed]);
          }
          count(ws.sock.destroyed ? "slow frame: closed by the server" : "slow frame: held until the end");
          ws.sock.destroy();
        } catch {
          count("slow frame: error");
        }
      })(),
    );
  }

  // ---- a socket.io client that stops reading while a flood is sent to its user's room
  jobs.push(
    (async () => {
      try {
        const ws = await openRawWs(`http://${gw}`, "/socket.io/?EIO=4&transport=websocket", { headers: { Cookie: victim.cookie }, timeoutMs: 10000 });
        if (ws.status !== 101) return count(`non-reader: upgrade answered ${ws.status}`);
        ws.sock.write(encodeFrame(1, "40"));
        await sleep(1000);
        ws.sock.pause(); // never read again: the kernel buffers fill, then the gateway's queue
        const closed = new Promise((r) => ws.sock.once("close", () => r(true)));
        const redis = new Redis(valkeyUrl, { maxRetriesPerRequest: 1 });
        redis.on("error", () => {});
        const emitter = new Emitter(redis);
        const big = "x".repeat(20000);
        let sent = 0;
        while (Date.now() < until) {
          for (let k = 0; k < 50; k++) emitter.to(`user:${victim.userId}`).emit("flood", { n: sent++, big });
          const r = await Promise.race([sleep(100).then(() => false), closed]);
          if (r) break;
        }
        count(`non-reader: flood messages sent ${sent > 0 ? "> 0" : "0"}`);
        // The gateway must have dropped it as a slow consumer: its end of the TCP connection is closed.
        ws.sock.resume();
        const gone = await Promise.race([closed, sleep(5000).then(() => false)]);
        count(gone ? "non-reader: disconnected by the server" : "non-reader: still connected");
        ws.sock.destroy();
        redis.disconnect();
      } catch (err) {
        count(`non-reader: error ${err.message}`);
      }
    })(),
  );

  // ---- a flood of handshakes from one address (through nginx: X-Forwarded-For is that address)
  for (let k = 0; k < floodConcurrency; k++) {
    jobs.push(
      (async () => {
        while (Date.now() < until) {
          try {
            const sock = net.connect({ host: edgeHost, port: Number(edgePort), localAddress: src });
            const status = await new Promise((resolve) => {
              sock.on("error", () => resolve("error"));
              sock.on("data", (d) => resolve(/^HTTP\/1\.1 (\d{3})/.exec(d.toString("latin1"))?.[1] ?? "?"));
              sock.on("connect", () => sock.write("GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
            });
            sock.destroy();
            count(`handshake flood: ${status}`);
          } catch {
            count("handshake flood: error");
          }
        }
      })(),
    );
  }

  // ---- oversized and malformed packets, over WebSocket and polling, direct
  const garbage = [
    "4", "42", "42[", '42["x"', "4/", "45-[]", '451-["a",{"_placeholder":true,"num":99}]', "40{", "\u0000\u0001", "9", "",
    '42["message:send",' + "[".repeat(5000) + "]".repeat(5000) + "]",
  ];
  jobs.push(
    (async () => {
      while (Date.now() < until) {
        try {
          const ws = await openRawWs(`http://${gw}`, "/socket.io/?EIO=4&transport=websocket", { timeoutMs: 10000 });
          if (ws.status !== 101) {
            count(`malformed ws: upgrade answered ${ws.status}`);
            await sleep(200);
            continue;
          }
          const closed = new Promise((r) => ws.sock.once("close", () => r(true)));
          const pick = garbage[Math.floor(Math.random() * garbage.length)];
          ws.sock.write(encodeFrame(1, "40"));
          ws.sock.write(encodeFrame(1, pick));
          // Sometimes a frame over engine.max_payload (1 MB): the answer is a 1009 close.
          if (Math.random() < 0.2) ws.sock.write(encodeFrame(1, "4" + "x".repeat(1_100_000)));
          if (Math.random() < 0.2) ws.sock.write(Buffer.from([0x8f, 0x80, 1, 2, 3, 4])); // unknown opcode
          count((await Promise.race([closed, sleep(1000).then(() => false)])) ? "malformed ws: closed by the server" : "malformed ws: kept open");
          ws.sock.destroy();
        } catch {
          count("malformed ws: error");
        }
        try {
          const hs = await fetch(`http://${gw}/socket.io/?EIO=4&transport=polling`, { signal: AbortSignal.timeout(5000) });
          const text = await hs.text();
          if (hs.status !== 200) {
            count(`malformed polling: handshake ${hs.status}`);
            continue;
          }
          const sid = JSON.parse(text.slice(1)).sid;
          const body = Math.random() < 0.2 ? "4" + "x".repeat(1_100_000) : garbage[Math.floor(Math.random() * garbage.length)] + "\u001e" + "2probe";
          const r = await fetch(`http://${gw}/socket.io/?EIO=4&transport=polling&sid=${sid}`, {
            method: "POST",
            headers: { "content-type": "text/plain;charset=UTF-8" },
            body,
            signal: AbortSignal.timeout(5000),
          });
          await r.text();
          count(`malformed polling: POST answered ${r.status}`);
        } catch {
          count("malformed polling: error");
        }
      }
    })(),
  );

  await Promise.all(jobs);
  return { counts };
}
