// The page's merging rules in examples/nextjs, on their own: presence (snapshot and live updates
// merged by lastSeen, so a change between the two is never lost) and the message list (optimistic
// sends confirmed by their ack, live copies, the history refetched after a connect that did not
// recover). The modules are TypeScript: transpiled here with the example's own compiler.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import { nextAppDir } from "../lib/nextapp.mjs";

let tmp;
let presence, list;
before(async () => {
  const ts = createRequire(path.join(nextAppDir, "package.json"))("typescript");
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "nextjs-merge-"));
  const load = async (name) => {
    const source = fs.readFileSync(path.join(nextAppDir, "src/lib", `${name}.ts`), "utf8");
    const { outputText } = ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } });
    assert.doesNotMatch(outputText, /^import (?!type)/m, `${name}.ts must stay free of runtime imports to be tested alone`);
    const file = path.join(tmp, `${name}.mjs`);
    fs.writeFileSync(file, outputText);
    return import(pathToFileURL(file).href);
  };
  presence = await load("presence");
  list = await load("message-list");
});
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

test("presence: the later of snapshot and live update wins, whichever arrives first", () => {
  const { mergePresence } = presence;
  // A live update (bob went away at t=200) arrives before a snapshot taken at t=100 is answered.
  let p = mergePresence({}, [{ userId: "bob", status: "away", lastSeen: 200 }]);
  p = mergePresence(p, [{ userId: "bob", status: "online", lastSeen: 100 }]);
  assert.deepEqual(p.bob, { userId: "bob", status: "away", lastSeen: 200 });
  // The snapshot is newer than what the page had.
  p = mergePresence(p, [{ userId: "bob", status: "offline", lastSeen: 300 }]);
  assert.equal(p.bob.status, "offline");
  // Never-seen members are offline until something newer comes.
  p = mergePresence(p, [{ userId: "carol", status: "offline", lastSeen: null }]);
  assert.deepEqual(p.carol, { userId: "carol", status: "offline", lastSeen: null });
  p = mergePresence(p, [{ userId: "carol", status: "online", lastSeen: 5 }]);
  assert.equal(p.carol.status, "online");
  // A snapshot without lastSeen never overrides a known change.
  p = mergePresence(p, [{ userId: "carol", status: "offline", lastSeen: null }]);
  assert.equal(p.carol.status, "online");
  // Nothing changes: the same object (no re-render).
  assert.equal(mergePresence(p, [{ userId: "bob", status: "offline", lastSeen: 300 }]), p);
});

const msg = (id, createdAt, extra = {}) => ({ id, channelId: "c", author: { id: "u", name: "U" }, content: id, createdAt, ...extra });

test("message list: an optimistic send is confirmed in place by its ack or its live copy, once", () => {
  const { upsertMessage, localId, markFailed } = list;
  const pending = { ...msg(localId("k1"), "2024-01-01T00:00:01Z", { clientId: "k1" }), pending: true };
  let l = [msg("a", "2024-01-01T00:00:00Z"), pending];
  const confirmed = msg("m1", "2024-01-01T00:00:02Z", { clientId: "k1" });
  l = upsertMessage(l, confirmed); // the live message:new first
  assert.deepEqual(l.map((m) => m.id), ["a", "m1"]);
  l = upsertMessage(l, confirmed); // then the ack: no duplicate
  assert.deepEqual(l.map((m) => m.id), ["a", "m1"]);
  l = upsertMessage(l, msg("b", "2024-01-01T00:00:03Z"));
  assert.deepEqual(l.map((m) => m.id), ["a", "m1", "b"]);
  const failed = markFailed([{ ...pending }], "k1", "Not confirmed");
  assert.equal(failed[0].failed, "Not confirmed");
  assert.equal(failed[0].pending, false);
  // A send marked failed after a timeout that did get through is confirmed by its live copy.
  assert.deepEqual(upsertMessage(failed, confirmed), [confirmed]);
});

test("message list: a refetched history keeps its order and deletions, newer live messages and unconfirmed sends", () => {
  const { mergeHistory, localId } = list;
  const server = [msg("a", "2024-01-01T00:00:00Z"), msg("c", "2024-01-01T00:00:02Z", { clientId: "k1" })];
  const local = [
    msg("a", "2024-01-01T00:00:00Z"),
    msg("b", "2024-01-01T00:00:01Z"), // deleted meanwhile: gone
    { ...msg(localId("k1"), "2024-01-01T00:00:02Z", { clientId: "k1" }), pending: true }, // confirmed by the server: gone
    { ...msg(localId("k2"), "2024-01-01T00:00:03Z", { clientId: "k2" }), pending: true }, // still unconfirmed: kept
    msg("d", "2024-01-01T00:00:04Z"), // arrived live after the server read: kept
  ];
  assert.deepEqual(mergeHistory(local, server).map((m) => m.id), ["a", "c", localId("k2"), "d"]);
  assert.deepEqual(mergeHistory([], server).map((m) => m.id), ["a", "c"]);
});
