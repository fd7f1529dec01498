// Validation of client event payloads against the repository's JSON Schemas (the same ones the
// TypeScript types are generated from), so the route handlers, the types and the gateway's tests
// share one description.
import "server-only";
import { Ajv, type ValidateFunction } from "ajv";
import { eventSchemas } from "./generated/event-schemas";
import type { ClientToServerPayloads } from "./generated/event-payloads";

// strictRequired off: "exactly one of" is written as oneOf of bare `required` lists.
const ajv = new Ajv({ allErrors: false, strict: true, strictRequired: false });
ajv.addKeyword("tsType"); // json-schema-to-typescript's annotation, no validation meaning
for (const [file, schema] of Object.entries(eventSchemas)) ajv.addSchema(schema as object, file);

const compiled = new Map<string, ValidateFunction>();

function validator(ref: string): ValidateFunction {
  let v = compiled.get(ref);
  if (!v) {
    v = ajv.compile({ $ref: ref });
    compiled.set(ref, v);
  }
  return v;
}

export type ClientEventName = keyof ClientToServerPayloads;
type PayloadOf<E extends ClientEventName> = ClientToServerPayloads[E] extends { payload: infer P } ? P : never;

/** The payload of client event `event` if it matches its schema; else the first problem, readable. */
export function checkPayload<E extends ClientEventName>(event: E, payload: unknown): { ok: true; value: PayloadOf<E> } | { ok: false; detail: string } {
  const v = validator(`client-to-server.json#/properties/${event}/properties/payload`);
  if (v(payload)) return { ok: true, value: payload as PayloadOf<E> };
  const e = v.errors?.[0];
  return { ok: false, detail: e ? `payload${e.instancePath} ${e.message}` : "invalid payload" };
}
