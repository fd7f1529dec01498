// The event payload schemas of schema/events/ (the one description the Next.js example's types are
// generated from), compiled with ajv, for the tests to check what the gateway (and the fixture app
// through it) sends: server-to-client payloads and the acks of client events. Events outside the
// schemas (the relay tests' own names) are not checked.
import fs from "node:fs";
import path from "node:path";
import { Ajv } from "ajv";
import { repoRoot } from "./procs.mjs";

export const schemaDir = path.join(repoRoot, "schema/events");
const FILES = ["common.json", "server-to-client.json", "client-to-server.json"];

// strictRequired off: "exactly one of" is written as oneOf/if of bare `required` lists.
const ajv = new Ajv({ allErrors: true, strict: true, strictRequired: false });
ajv.addKeyword("tsType");
const schemas = {};
for (const f of FILES) {
  schemas[f] = JSON.parse(fs.readFileSync(path.join(schemaDir, f), "utf8"));
  ajv.addSchema(schemas[f], f);
}

const cache = new Map();
function validator(ref) {
  if (!cache.has(ref)) cache.set(ref, ajv.compile({ $ref: ref }));
  return cache.get(ref);
}

const describe = (v) => v.errors.map((e) => `${e.instancePath || "/"} ${e.message}${e.params && Object.keys(e.params).length ? ` ${JSON.stringify(e.params)}` : ""}`).join("; ");
const preview = (x) => {
  const s = JSON.stringify(x);
  return s && s.length > 300 ? `${s.slice(0, 300)}…` : s;
};

export const serverEvents = Object.keys(schemas["server-to-client.json"].properties);
export const clientEvents = Object.keys(schemas["client-to-server.json"].properties);

/** null when `payload` matches server-to-client event `event` (or the event has no schema); else the problem. */
export function checkServerEvent(event, payload) {
  if (!serverEvents.includes(event)) return null;
  const v = validator(`server-to-client.json#/properties/${event}`);
  return v(payload) ? null : `"${event}" payload ${preview(payload)} does not match schema/events: ${describe(v)}`;
}

/** null when `ack` matches the ack schema of client event `event` (or it has none); else the problem. */
export function checkAck(event, ack) {
  const def = schemas["client-to-server.json"].properties[event];
  if (!def?.properties?.ack) return null;
  const v = validator(`client-to-server.json#/properties/${event}/properties/ack`);
  return v(ack) ? null : `ack of "${event}" ${preview(ack)} does not match schema/events: ${describe(v)}`;
}

/** null when `payload` is a valid payload of client event `event`; else the problem. */
export function checkClientPayload(event, payload) {
  const v = validator(`client-to-server.json#/properties/${event}/properties/payload`);
  return v(payload) ? null : `"${event}" payload ${preview(payload)} does not match schema/events: ${describe(v)}`;
}

export function assertServerEvent(event, payload) {
  const problem = checkServerEvent(event, payload);
  if (problem) throw new Error(problem);
}

export function assertAck(event, ack) {
  const problem = checkAck(event, ack);
  if (problem) throw new Error(problem);
}
