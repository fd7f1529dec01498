// WebSocket framing as RFC 6455 and the reference (the `ws` library) handle it: frames pipelined
// behind the upgrade request, fragments with control frames between them, pings, and the close
// codes for broken frames. Runs against SIO_TARGET like the rest of core/.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { useTarget } from "./target.mjs";
import { openRawWs, encodeFrame } from "../lib/rawws.mjs";

const WS_PATH = "/socket.io/?EIO=4&transport=websocket";

describe("websocket frames", { timeout: 20000 }, () => {
  const { url } = useTarget();

  async function open(opts) {
    const ws = await openRawWs(url(), WS_PATH, opts);
    assert.equal(ws.status, 101);
    await ws.nextMatching(/^0\{/);
    return ws;
  }

  it("reads a frame sent in the same packet as the upgrade request", async () => {
    const ws = await open({ pipelined: encodeFrame(1, "40") });
    await ws.nextMatching(/^40\{"sid":/);
    ws.destroy();
  });

  it("reassembles a fragmented message around a ping, and answers the ping", async () => {
    const ws = await open();
    ws.sock.write(
      Buffer.concat([
        encodeFrame(1, "4", { fin: false }),
        encodeFrame(9, "are you there"),
        encodeFrame(0, "0", { fin: true }),
      ]),
    );
    await ws.nextMatching(/^40\{"sid":/);
    await ws.until((w) => w.pongs.length === 1, 3000, "pong");
    assert.deepEqual(ws.pongs, ["are you there"]);
    ws.destroy();
  });

  for (const code of [1000, 1001, 4000]) {
    it(`answers a close frame with code ${code} with the same code`, async () => {
      const ws = await open();
      ws.sendFrame(8, Buffer.from([code >> 8, code & 0xff]));
      await ws.ended;
      assert.equal(ws.closeFrame?.code, code);
    });
  }

  for (const [what, frame, code] of [
    ["an unmasked frame", () => encodeFrame(1, "40", { masked: false }), 1002],
    ["an unknown opcode", () => encodeFrame(3, "x"), 1002],
    ["a continuation without a message", () => encodeFrame(0, "x"), 1002],
    ["text that is not UTF-8", () => encodeFrame(1, Buffer.from([0x34, 0xff, 0xfe])), 1007],
    // RFC 6455 §7.4: codes no endpoint may send fail the connection.
    ...[999, 1004, 1005, 1006, 1015, 1016, 2999, 5000].map((c) => [
      `a close frame with code ${c}`,
      () => encodeFrame(8, Buffer.from([c >> 8, c & 0xff])),
      1002,
    ]),
  ]) {
    it(`closes with ${code} on ${what}`, async () => {
      const ws = await open();
      ws.sock.write(frame());
      await ws.ended;
      assert.equal(ws.closeFrame?.code, code);
    });
  }
});
