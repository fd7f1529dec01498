// The Next.js example's sharded emitter (examples/nextjs/src/lib/sharded-emitter.ts) for the tests and benches,
// compiled with the example's own TypeScript (scripts/setup.sh installs it) into tests/node/node_modules/, where
// its one import (notepack.io) resolves.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const ROOT = path.resolve(import.meta.dirname, "../../..");
const SOURCE = path.join(ROOT, "examples/nextjs/src/lib/sharded-emitter.ts");

/** Resolves to the module: {ShardedEmitter, ShardedBroadcast}. */
export async function loadShardedEmitter() {
  const require = createRequire(path.join(ROOT, "examples/nextjs/package.json"));
  const ts = require("typescript");
  const out = ts.transpileModule(fs.readFileSync(SOURCE, "utf8"), {
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
  });
  const file = path.join(import.meta.dirname, "..", "node_modules", ".sharded-emitter.mjs");
  fs.writeFileSync(file, out.outputText);
  return import(`${file}?${fs.statSync(file).mtimeMs}`);
}
