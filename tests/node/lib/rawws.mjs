// A minimal WebSocket client over a plain TCP socket, for the tests that need what a library hides:
// the HTTP status of a refused upgrade, the close code the server sent, a client that stops
// reading at the TCP level (slow consumer), or frames bigger than the server accepts.
// Engine.IO helpers on top: the handshake over WebSocket and the Socket.IO CONNECT.
import net from "node:net";
import crypto from "node:crypto";

/**
 * Opens `ws://host:port{path}` with extra `headers` (e.g. {Cookie}). Resolves to a RawWs once the
 * server answered the upgrade request, whatever the status: check `.status` (101 = open) and, for a
 * refusal, `.body`.
 */
export function openRawWs(url, path, { headers = {}, timeoutMs = 5000, pipelined = null } = {}) {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: hostname, port: Number(port) });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no upgrade answer within ${timeoutMs} ms`));
    }, timeoutMs);
    let buf = Buffer.alloc(0);
    sock.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    sock.on("connect", () => {
      const key = crypto.randomBytes(16).toString("base64");
      const lines = [
        `GET ${path} HTTP/1.1`,
        `Host: ${hostname}:${port}`,
        "Upgrade: websocket",
        "Connection: Upgrade",
        `Sec-WebSocket-Key: ${key}`,
        "Sec-WebSocket-Version: 13",
        ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
        "",
        "",
      ];
      // `pipelined` bytes go in the same write as the request, before any answer.
      sock.write(pipelined ? Buffer.concat([Buffer.from(lines.join("\r\n")), pipelined]) : lines.join("\r\n"));
    });
    const onData = (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      const head = buf.subarray(0, end).toString("latin1");
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1]);
      const rest = buf.subarray(end + 4);
      sock.off("data", onData);
      clearTimeout(timer);
      const ws = new RawWs(sock, status, head);
      if (status === 101) {
        ws._feed(rest);
        resolve(ws);
      } else {
        // A refusal: the body follows (the server closes the connection after it).
        ws.body = rest.toString("utf8");
        sock.on("data", (c) => (ws.body += c.toString("utf8")));
        sock.once("close", () => resolve(ws));
        sock.once("end", () => sock.destroy());
      }
    };
    sock.on("data", onData);
  });
}

/** One client WebSocket frame: masked unless `masked` is false, final unless `fin` is false. */
export function encodeFrame(opcode, payload, { fin = true, masked = true } = {}) {
  const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload, "utf8");
  const first = (fin ? 0x80 : 0) | opcode;
  const maskBit = masked ? 0x80 : 0;
  let header;
  if (data.length < 126) {
    header = Buffer.from([first, maskBit | data.length]);
  } else if (data.length < 65536) {
    header = Buffer.alloc(4);
    header[0] = first;
    header[1] = maskBit | 126;
    header.writeUInt16BE(data.length, 2);
  } else {
    header = Buffer.alloc(10);
    header[0] = first;
    header[1] = maskBit | 127;
    header.writeBigUInt64BE(BigInt(data.length), 2);
  }
  if (!masked) return Buffer.concat([header, data]);
  const mask = crypto.randomBytes(4);
  const out = Buffer.alloc(data.length);
  for (let i = 0; i < data.length; i++) out[i] = data[i] ^ mask[i % 4];
  return Buffer.concat([header, mask, out]);
}

export class RawWs {
  constructor(sock, status, head) {
    this.sock = sock;
    this.status = status;
    this.head = head;
    this.body = "";
    this.buf = Buffer.alloc(0);
    /** Text messages received, in order. */
    this.messages = [];
    /** Payloads of the pong frames received. */
    this.pongs = [];
    /** The server's close frame {code, reason}, when one came. */
    this.closeFrame = null;
    this.waiters = [];
    this.ended = new Promise((resolve) => sock.once("close", () => resolve()));
    this.isEnded = false;
    this.ended.then(() => {
      this.isEnded = true;
      this._wake();
    });
    sock.on("error", () => {}); // a reset shows up as `close`; tests look at what was received
    if (status === 101) sock.on("data", (c) => this._feed(c));
  }

  _feed(chunk) {
    this.buf = Buffer.concat([this.buf, chunk]);
    for (;;) {
      if (this.buf.length < 2) break;
      const opcode = this.buf[0] & 0x0f;
      let len = this.buf[1] & 0x7f;
      let off = 2;
      if (len === 126) {
        if (this.buf.length < 4) break;
        len = this.buf.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (this.buf.length < 10) break;
        len = Number(this.buf.readBigUInt64BE(2));
        off = 10;
      }
      if (this.buf.length < off + len) break;
      const payload = this.buf.subarray(off, off + len);
      this.buf = this.buf.subarray(off + len);
      if (opcode === 1) this.messages.push(payload.toString("utf8"));
      else if (opcode === 10) this.pongs.push(payload.toString("utf8"));
      else if (opcode === 8) {
        this.closeFrame = {
          code: payload.length >= 2 ? payload.readUInt16BE(0) : null,
          reason: payload.subarray(2).toString("utf8"),
        };
      }
    }
    this._wake();
  }

  _wake() {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  /** Resolves once `predicate(this)` is true (checked on every received chunk), or rejects after `ms`. */
  until(predicate, ms = 3000, what = "condition") {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (predicate(this)) {
          clearTimeout(timer);
          resolve();
        } else if (this.isEnded) {
          clearTimeout(timer);
          reject(new Error(`connection ended before ${what}; got ${JSON.stringify(this.messages.slice(-5))}`));
        } else {
          this.waiters.push(check);
        }
      };
      const timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms);
      check();
    });
  }

  /** Waits for a text message matching `re`; resolves to it. */
  async nextMatching(re, ms = 3000) {
    let found;
    await this.until(() => (found = this.messages.find((m) => re.test(m))) !== undefined, ms, `message ${re}`);
    return found;
  }

  /** Sends one masked frame (`opcode` 1 text, 8 close...; `fin` false for a fragment). */
  sendFrame(opcode, payload, { fin = true, masked = true } = {}) {
    return this.sock.write(encodeFrame(opcode, payload, { fin, masked }));
  }

  send(text) {
    return this.sendFrame(1, text);
  }

  /** Stops reading at the TCP level: the kernel buffers fill and the server's writes block. */
  pause() {
    this.sock.pause();
  }

  resume() {
    this.sock.resume();
  }

  destroy() {
    this.sock.destroy();
  }
}

/**
 * An Engine.IO session over WebSocket with a Socket.IO connection to `/`: resolves to the RawWs
 * after the CONNECT reply (`40{"sid":…}`); rejects on a refusal or a CONNECT_ERROR. Answers pings
 * while it is reading.
 */
export async function rawSocketIo(url, { cookie, enginePath = "/socket.io/" } = {}) {
  const ws = await openRawWs(url, `${enginePath}?EIO=4&transport=websocket`, {
    headers: cookie ? { Cookie: cookie } : {},
  });
  if (ws.status !== 101) throw new Error(`upgrade refused: ${ws.status} ${ws.body}`);
  await ws.nextMatching(/^0\{/);
  ws.sock.on("data", () => {
    // Heartbeat: answer each new ping "2" with a pong "3".
    while ((ws._pings ?? 0) < ws.messages.filter((m) => m === "2").length) {
      ws._pings = (ws._pings ?? 0) + 1;
      ws.send("3");
    }
  });
  ws.send("40");
  const reply = await ws.nextMatching(/^4[04]/);
  if (reply.startsWith("44")) throw new Error(`connect_error: ${reply}`);
  return ws;
}
