// Peer of `python -m bench peers`: Node's socket.io 4.8 on a listening socket
// inherited as file descriptor argv[2]. The trigger is the Python servers' control
// message as an event: `go` with "count size" from any client makes the server
// `io.emit` `count` events `m` of `size` bytes to every client. Engine.IO pings
// every 600 s (none in a run), no permessage-deflate, websocket transport only.
import http from "node:http";
import { Server } from "socket.io";

const fd = Number(process.argv[2]);
const server = http.createServer();
const io = new Server(server, {
  perMessageDeflate: false,
  httpCompression: false,
  pingInterval: 600_000,
  pingTimeout: 600_000,
  transports: ["websocket"],
  serveClient: false,
});

io.on("connection", (socket) => {
  socket.on("go", (message) => {
    const [count, size] = String(message).split(" ").map(Number);
    const payload = "x".repeat(size);
    for (let i = 0; i < count; i++) io.emit("m", payload);
  });
});

server.listen({ fd, backlog: 4096 });
process.on("SIGTERM", () => process.exit(0));
