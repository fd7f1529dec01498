// The app's side of the checked traffic: `@socket.io/redis-emitter` publishing `message:new` to
// the fan-out rooms at a steady rate, each message `ck e<k> <seq> <room> <sent_ms>`, and a record
// of every publish and its outcome (the checker's "what was sent"):
//
//   P <t> e<k> <seq> <room> ok <receivers> | err <reason>
//
// <t> is when PUBLISH was sent (Unix ms); receivers is Valkey's answer (0: nobody subscribed).
import fs from "node:fs";
import { Emitter } from "@socket.io/redis-emitter";
import { Redis } from "ioredis";

/**
 * Starts publishing `ratePerS` messages per second round-robin over `rooms` through Valkey at
 * `url`. Resolves to {pause(), resume(), seal(rooms), stop(), counts()}.
 */
export async function startPublisher({ url, ratePerS, rooms, recordFile, id = 0 }) {
  const redis = new Redis(url, {
    // Fail at once while disconnected (a message that is not sent is recorded as such) and do
    // not wait forever on a frozen server; the answer may still come, and is then recorded.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: 20000,
    retryStrategy: () => 200,
  });
  redis.on("error", () => {});
  let last = null;
  // The real emitter, on a client that hands back PUBLISH's promise.
  const emitter = new Emitter({
    publish: (channel, msg) => {
      last = redis.publish(channel, msg);
      return last;
    },
  });
  const out = fs.createWriteStream(recordFile);
  const src = `e${id}`;
  let seq = 0;
  let next = 0;
  let paused = false;
  const counts = { sent: 0, ok: 0, err: 0, unheard: 0, pending: 0 };

  function publishOne(room) {
    seq += 1;
    const t = Date.now();
    const data = {
      id: `${src}-${seq}`,
      channelId: room.slice(room.indexOf(":") + 1),
      author: { id: "chaos", name: "Chaos" },
      content: `ck ${src} ${seq} ${room} ${t}`,
      createdAt: new Date(t).toISOString(),
    };
    last = null;
    emitter.to(room).emit("message:new", data);
    const p = last;
    const mySeq = seq;
    counts.sent += 1;
    counts.pending += 1;
    p.then(
      (receivers) => {
        counts.ok += 1;
        if (receivers === 0) counts.unheard += 1;
        out.write(`P ${t} ${src} ${mySeq} ${room} ok ${receivers}\n`);
      },
      (err) => {
        counts.err += 1;
        out.write(`P ${t} ${src} ${mySeq} ${room} err ${String(err.message).replace(/\s+/g, "_").slice(0, 60)}\n`);
      },
    ).finally(() => {
      counts.pending -= 1;
    });
  }

  const t0 = Date.now();
  let due = 0;
  const tick = setInterval(() => {
    if (paused) return;
    const want = Math.floor(((Date.now() - t0) / 1000) * ratePerS);
    // Catch up at most one second's worth after a stall (the event loop, not Valkey).
    if (want - due > ratePerS) due = want - ratePerS;
    while (due < want) {
      due += 1;
      publishOne(rooms[next++ % rooms.length]);
    }
  }, 10);

  return {
    counts: () => ({ ...counts }),
    pause() {
      paused = true;
    },
    resume() {
      paused = false;
    },
    /** Publishes one message to each of `rooms` (the seal: the last message of each room). */
    seal(sealRooms = rooms) {
      for (const r of sealRooms) publishOne(r);
    },
    /** Waits for every publish to be answered (at most `ms`). */
    async settle(ms = 25000) {
      const until = Date.now() + ms;
      while (counts.pending > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
      return counts.pending === 0;
    },
    async stop() {
      clearInterval(tick);
      await this.settle(5000);
      redis.disconnect();
      await new Promise((r) => out.end(r));
    },
  };
}
