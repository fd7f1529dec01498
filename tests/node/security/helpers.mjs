// Shared pieces of the security tests: a TCP relay that can go silent like a phone's old network (no FIN, no
// RST: the connection is half-open), and small readers of what a socket heard.
import net from "node:net";
import { freePort } from "../lib/procs.mjs";

const relays = new Set();

/**
 * A TCP relay from a free loopback port to `target` ("http://host:port"). `freeze()` stops forwarding in both
 * directions and keeps every connection open: the server sees a peer that went silent (half-open), the client
 * sees nothing more. Resolves to {url, freeze(), close()}.
 */
export async function startSilentRelay(target) {
  const { hostname, port } = new URL(target);
  const pairs = new Set();
  let frozen = false;
  const server = net.createServer((client) => {
    const upstream = net.connect({ host: hostname, port: Number(port) });
    const pair = { client, upstream };
    pairs.add(pair);
    const forward = (from, to) =>
      from.on("data", (chunk) => {
        if (!frozen) to.write(chunk);
      });
    forward(client, upstream);
    forward(upstream, client);
    // Once frozen, a close on either side is not passed on either: the other side must not learn of it.
    const end = () => {
      if (frozen) return;
      client.destroy();
      upstream.destroy();
      pairs.delete(pair);
    };
    for (const s of [client, upstream]) {
      s.on("error", end);
      s.on("close", end);
    }
  });
  const listenPort = await freePort();
  await new Promise((resolve) => server.listen(listenPort, "127.0.0.1", resolve));
  const relay = {
    url: `http://127.0.0.1:${listenPort}`,
    freeze() {
      frozen = true;
    },
    close() {
      for (const { client, upstream } of pairs) {
        client.destroy();
        upstream.destroy();
      }
      pairs.clear();
      server.close();
      relays.delete(relay);
    },
  };
  relays.add(relay);
  return relay;
}

export function closeSilentRelays() {
  for (const r of [...relays]) r.close();
}

/** The `message:new` contents a recoverable socket (tests/node/recovery/helpers.mjs) received, in order. */
export const contents = (sock) => sock.got.filter((g) => g.event === "message:new").map((g) => g.args[0].content);

/** Every event name and first argument a recoverable socket received, for "heard nothing of" checks. */
export const heard = (sock) => sock.got.map((g) => ({ event: g.event, arg: g.args[0] }));

/** The recovery claim a socket.io-client socket would send on its next reconnect: {pid, offset}. */
export const claimOf = (sock) => ({ pid: sock._pid, offset: sock._lastOffset });
