// Node reference for the `conformance` example: the servers the official Engine.IO / Socket.IO protocol suites
// expect, plus the extra Socket.IO handlers used by the socket.io-client interop tests in this folder.
// Listens on 127.0.0.1:$PORT and prints "listening on <port>" when ready.
//   /engine.io/  plain engine.io echo (pingInterval 300, pingTimeout 200, maxPayload 1e6)
//   /socket.io/  socket.io with namespaces "/" and "/custom" (same timings, connectTimeout 1000)
import http from "node:http";
import { Server as EngineServer } from "engine.io";
import { Server } from "socket.io";

const port = Number(process.env.PORT || 3000);
const timings = { pingInterval: 300, pingTimeout: 200, maxHttpBufferSize: 1e6 };
const cors = { origin: "*" };

const httpServer = http.createServer((req, res) => {
  res.writeHead(404).end();
});

// Socket.IO first; both attach with destroyUpgrade:false so neither kills the other's WebSocket upgrades.
const io = new Server(httpServer, {
  ...timings,
  path: "/socket.io/",
  connectTimeout: 1000,
  cors,
  destroyUpgrade: false,
});

const eio = new EngineServer({ ...timings, cors });
eio.attach(httpServer, { path: "/engine.io/", destroyUpgrade: false });
eio.on("connection", (socket) => {
  socket.on("data", (...args) => socket.send(...args));
});

io.on("connection", (socket) => {
  socket.emit("auth", socket.handshake.auth);

  socket.on("message", (...args) => {
    socket.emit("message-back", ...args);
  });

  socket.on("message-with-ack", (...args) => {
    const ack = args.pop();
    ack(...args);
  });

  // server -> client ack: emit "ack-request" with the args and an ack callback (2 s timeout)
  socket.on("server-ack", (...args) => {
    if (typeof args[args.length - 1] === "function") args.pop();
    socket.timeout(2000).emit("ack-request", ...args, (err, ...reply) => {
      if (err) socket.emit("ack-timeout");
      else socket.emit("ack-result", ...reply);
    });
  });

  socket.on("disconnect-me", () => {
    socket.disconnect();
  });

  // close the Engine.IO connection without a Socket.IO DISCONNECT packet
  socket.on("drop-transport", () => {
    socket.conn.close();
  });

  socket.on("join", (room, ack) => {
    socket.join(room);
    if (typeof ack === "function") ack(true);
  });

  socket.on("to-room", (room, ...args) => {
    const ack = typeof args[args.length - 1] === "function" ? args.pop() : null;
    io.to(room).emit("room-message", ...args);
    if (ack) ack(true);
  });
});

io.of("/custom").on("connection", (socket) => {
  socket.emit("auth", socket.handshake.auth);
});

httpServer.listen(port, "127.0.0.1", () => {
  console.log(`listening on ${httpServer.address().port}`);
});

for (const sig of ["SIGINT", "SIGTERM"]) {
  process.once(sig, () => {
    io.close();
    eio.close();
    httpServer.close();
    process.exit(0);
  });
}
