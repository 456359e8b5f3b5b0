// Peer of `python -m bench peers`: Node's `ws` 8 on a listening socket inherited as
// file descriptor argv[2]. The trigger is the Python servers' control message: a
// text "count size" from any client broadcasts `count` frames of `size` bytes to
// every client. No pings (ws sends none unless asked), no permessage-deflate.
import http from "node:http";
import { WebSocketServer } from "ws";

const fd = Number(process.argv[2]);
const server = http.createServer((req, res) => res.writeHead(404).end());
const wss = new WebSocketServer({ server, perMessageDeflate: false });

wss.on("connection", (ws) => {
  ws.on("error", () => {}); // the counting clients just drop the connection
  ws.on("message", (message) => {
    const [count, size] = message.toString().split(" ").map(Number);
    const data = Buffer.from("x".repeat(size)); // encoded once, sent as text
    for (let i = 0; i < count; i++) {
      for (const c of wss.clients) c.send(data, { binary: false });
    }
  });
});

server.listen({ fd, backlog: 4096 });
process.on("SIGTERM", () => process.exit(0));
