// The gateway's recovery log as tests see it: which partition a room's broadcasts go into, the partitions'
// stream keys, and the offsets clients get (one stream id, or a frontier over several partitions).

/**
 * The recovery log partition a broadcast to `room` alone is recorded in, out of `partitions`, as the gateway
 * computes it (FNV-1a of the room's name).
 */
export function logPartitionOf(room, partitions) {
  let h = 0xcbf29ce484222325n;
  for (const b of Buffer.from(room)) h = ((h ^ BigInt(b)) * 0x100000001b3n) & 0xffffffffffffffffn;
  return Number(h % BigInt(partitions));
}
/** A partition's stream key in namespace "/". */
export const logKey = (partition) => (partition === 0 ? "socket.io-csr-log#{/}#" : `socket.io-csr-log#{/#${partition}}#`);

/**
 * A client's offset as the gateway writes it: with one log partition a stream id `<ms>-<seq>`; with several
 * a frontier, `<newest ms>~` then per partition `<ms older>[.<seq>]` in base 36, `_`-separated ("" = none).
 * Returns [[ms, seq], ...] per partition (BigInt), or null for anything else.
 */
export function parseOffset(o) {
  if (typeof o !== "string") return null;
  if (/^\d+-\d+$/.test(o)) return [o.split("-").map(BigInt)];
  const m = /^([0-9a-z]+)~([0-9a-z._]*)$/.exec(o);
  if (!m) return null;
  const newest = BigInt(parseInt(m[1], 36));
  return m[2].split("_").map((f) => {
    if (f === "") return [0n, 0n];
    const [older, seq = "0"] = f.split(".");
    return [newest - BigInt(parseInt(older, 36)), BigInt(parseInt(seq, 36))];
  });
}

/** Whether offset `b` is past `a`: at or past it in every partition, and past it in one. */
export function offsetAfter(a, b) {
  const [pa, pb] = [parseOffset(a), parseOffset(b)];
  if (!pa || !pb || pa.length !== pb.length) return false;
  const cmp = ([am, as], [bm, bs]) => (am === bm ? (as < bs ? -1 : as > bs ? 1 : 0) : am < bm ? -1 : 1);
  const c = pa.map((x, i) => cmp(x, pb[i]));
  return c.every((v) => v <= 0) && c.some((v) => v < 0);
}
