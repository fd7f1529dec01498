// An emitter for gateways on sharded Pub/Sub (redis.pubsub = "sharded", a Valkey Cluster), the
// counterpart of @socket.io/redis-emitter, which speaks only the classic adapter's format. It
// SPUBLISHes the messages of @socket.io/redis-adapter's createShardedAdapter (8.3): JSON
// {uid, nsp, type, data}, msgpack when an argument holds binary data, a broadcast to one room
// on that room's channel as the adapter's subscription mode says, everything else on the
// namespace's channel. Node servers on createShardedAdapter receive the same messages.
//
//   const emitter = new ShardedEmitter(new Cluster([{ host: "10.0.0.1", port: 6379 }]));
//   emitter.to("channel:c1").emit("message:new", message);
//   emitter.in("user:u1").socketsJoin("channel:c2");
import { encode } from "notepack.io";

/** ioredis (Cluster or not) publishes with `spublish`, node-redis with `sPublish`. */
export type ShardedPublisher =
  | { spublish(channel: string, message: string | Buffer): Promise<unknown> }
  | { sPublish(channel: string, message: string | Buffer): Promise<unknown> };

export type SubscriptionMode = "static" | "dynamic" | "dynamic-private";

export interface ShardedEmitterOptions {
  /** The gateways' redis.prefix (createShardedAdapter's channelPrefix). */
  prefix?: string;
  /** The gateways' redis.subscription_mode; every server of a fleet uses the same. */
  subscriptionMode?: SubscriptionMode;
  nsp?: string;
}

// socket.io-adapter's MessageType.
const BROADCAST = 3;
const SOCKETS_JOIN = 4;
const SOCKETS_LEAVE = 5;
const DISCONNECT_SOCKETS = 6;

/** The uid Node servers know as the emitter's (they do not count it as a server). */
const UID = "emitter";

export class ShardedEmitter {
  private readonly prefix: string;
  private readonly mode: SubscriptionMode;
  private readonly nsp: string;

  constructor(
    private readonly client: ShardedPublisher,
    opts: ShardedEmitterOptions = {},
  ) {
    this.prefix = opts.prefix ?? "socket.io";
    this.mode = opts.subscriptionMode ?? "dynamic";
    this.nsp = opts.nsp ?? "/";
  }

  /** The same emitter for another namespace. */
  of(nsp: string): ShardedEmitter {
    return new ShardedEmitter(this.client, { prefix: this.prefix, subscriptionMode: this.mode, nsp });
  }

  to(room: string | string[]): ShardedBroadcast {
    return new ShardedBroadcast(this, toList(room), []);
  }

  in(room: string | string[]): ShardedBroadcast {
    return this.to(room);
  }

  except(room: string | string[]): ShardedBroadcast {
    return new ShardedBroadcast(this, [], toList(room));
  }

  emit(event: string, ...args: unknown[]): Promise<void> {
    return new ShardedBroadcast(this, [], []).emit(event, ...args);
  }

  /** @internal */
  publish(type: number, data: Record<string, unknown>, rooms: string[]): Promise<void> {
    const message = { uid: UID, nsp: this.nsp, type, data };
    const payload = hasBinary(data) ? encode(message) : JSON.stringify(message);
    const channel = this.channelFor(type, rooms);
    const sent = "spublish" in this.client ? this.client.spublish(channel, payload) : this.client.sPublish(channel, payload);
    return sent.then(() => undefined);
  }

  /** As createShardedAdapter's computeChannel(). */
  private channelFor(type: number, rooms: string[]): string {
    const base = `${this.prefix}#${this.nsp}#`;
    const [room] = rooms;
    const ownChannel =
      type === BROADCAST &&
      rooms.length === 1 &&
      ((this.mode === "dynamic" && room.length !== 20) || this.mode === "dynamic-private");
    return ownChannel ? `${base}${room}#` : base;
  }
}

export class ShardedBroadcast {
  constructor(
    private readonly emitter: ShardedEmitter,
    private readonly rooms: string[],
    private readonly exceptRooms: string[],
  ) {}

  to(room: string | string[]): ShardedBroadcast {
    return new ShardedBroadcast(this.emitter, union(this.rooms, toList(room)), this.exceptRooms);
  }

  in(room: string | string[]): ShardedBroadcast {
    return this.to(room);
  }

  except(room: string | string[]): ShardedBroadcast {
    return new ShardedBroadcast(this.emitter, this.rooms, union(this.exceptRooms, toList(room)));
  }

  /** Broadcasts `event` (no acknowledgements: an emitter has no way to receive them). */
  emit(event: string, ...args: unknown[]): Promise<void> {
    const packet = { type: 2, data: [event, ...args], nsp: "" };
    return this.emitter.publish(BROADCAST, { packet, opts: this.opts() }, this.rooms);
  }

  socketsJoin(rooms: string | string[]): Promise<void> {
    return this.emitter.publish(SOCKETS_JOIN, { opts: this.opts(), rooms: toList(rooms) }, this.rooms);
  }

  socketsLeave(rooms: string | string[]): Promise<void> {
    return this.emitter.publish(SOCKETS_LEAVE, { opts: this.opts(), rooms: toList(rooms) }, this.rooms);
  }

  disconnectSockets(close = false): Promise<void> {
    return this.emitter.publish(DISCONNECT_SOCKETS, { opts: this.opts(), close }, this.rooms);
  }

  private opts() {
    return { rooms: this.rooms, except: this.exceptRooms, flags: {} };
  }
}

function toList(room: string | string[]): string[] {
  return Array.isArray(room) ? room : [room];
}

function union(a: string[], b: string[]): string[] {
  return [...new Set([...a, ...b])];
}

function hasBinary(value: unknown, depth = 0): boolean {
  if (depth > 32 || value === null || typeof value !== "object") return false;
  if (Buffer.isBuffer(value) || ArrayBuffer.isView(value) || value instanceof ArrayBuffer) return true;
  const items = Array.isArray(value) ? value : Object.values(value);
  return items.some((v) => hasBinary(v, depth + 1));
}
