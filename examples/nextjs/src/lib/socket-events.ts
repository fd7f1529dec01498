// The Socket.IO event map shared by the browser (socket-client.ts), the server's emitter
// (realtime.ts) and the contract routes. The payload types are generated from the repository's
// JSON Schemas (schema/events/, which the gateway's tests validate what it sends against) into
// ./generated/event-payloads.ts by `npm run gen:events`; `npm run check:events` fails when they
// drift. Only the function shapes below are written by hand.
import type { ClientToServerPayloads, ServerToClientPayloads } from "./generated/event-payloads";

export type {
  ChannelJoined,
  ChannelLeft,
  ChannelRef,
  ChatMessage,
  ConversationJoined,
  ConversationRef,
  ErrorEvent,
  MessageDeleted,
  MessageSendAck,
  MessageSendPayload,
  OkOrRefused,
  PresenceUpdate,
  Refused,
  RoomName,
  Target,
  TypingUpdate,
  UserRef,
} from "./generated/event-payloads";

/** Server → client: each event's listener takes its payload. */
export type ServerToClientEvents = {
  [E in keyof ServerToClientPayloads]: (payload: ServerToClientPayloads[E]) => void;
};

type ClientEvent<P> = P extends { payload: infer T; ack: infer A }
  ? (payload: T, ack: (res: A) => void) => void
  : P extends { payload: infer T }
    ? (payload: T) => void
    : P extends { ack: infer A }
      ? (ack?: (res: A) => void) => void
      : () => void;

/** Client → server: payload first, then the ack callback for events that answer. */
export type ClientToServerEvents = {
  [E in keyof ClientToServerPayloads]: ClientEvent<ClientToServerPayloads[E]>;
};

/** What the gateway keeps per socket (fetchSockets from Node returns it as `data`). */
export interface SocketData {
  userId: string;
}
