// Test support: a WebSocket server on 127.0.0.1 (the ws package), a WebSocket that
// hides what a browser hides, and a recorder of what a connection reports.
import http from "node:http";
import { WebSocket, WebSocketServer } from "ws";

import { SUBPROTOCOL } from "../src/index.js";

export { WebSocket };

/**
 * A server that records every upgrade request (url, offered subprotocols, claimed
 * positions) and every plain HTTP request (the client's probe).
 *
 * - refuse(request, n): an HTTP status to refuse the n-th handshake with, or 0.
 * - onConnection(socket, request, n): the accepted socket.
 * - v1: select svc-infra.v1 when offered (default true); else "bearer" when offered.
 * - httpStatus: the answer to plain HTTP requests (default 404, as Django's).
 */
export async function startServer(options = {}) {
  const { refuse, onConnection, v1 = true, httpStatus = 404 } = options;
  const requests = [];
  const probes = [];
  const server = http.createServer((req, res) => {
    probes.push({ method: req.method, url: req.url });
    res.statusCode = httpStatus;
    res.end();
  });
  const wss = new WebSocketServer({
    noServer: true,
    handleProtocols: (offered) => {
      if (v1 && offered.has(SUBPROTOCOL)) return SUBPROTOCOL;
      return offered.has("bearer") ? "bearer" : false;
    },
  });
  server.on("clientError", (err, socket) => socket.destroy());
  server.on("upgrade", (req, socket, head) => {
    socket.on("error", () => {}); // a client that gave up first resets the connection
    const offered = String(req.headers["sec-websocket-protocol"] || "")
      .split(",")
      .map((p) => p.trim())
      .filter(Boolean);
    const url = new URL(req.url, "http://localhost");
    const request = { url: req.url, path: url.pathname, query: url.searchParams, protocols: offered };
    requests.push(request);
    const n = requests.length;
    const status = refuse ? refuse(request, n) : 0;
    if (status) {
      socket.end(`HTTP/1.1 ${status} Refused\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      if (onConnection) onConnection(ws, request, n);
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  return {
    port,
    requests,
    probes,
    url: (path = "/ws/chat/general/") => `ws://127.0.0.1:${port}${path}`,
    async close() {
      for (const client of wss.clients) client.terminate();
      wss.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** A port nothing listens on (it was free a moment ago). */
export async function deadPort() {
  const server = http.createServer();
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** An svc-infra.v1 text frame. */
export function frame(header, payload = "") {
  const body = typeof payload === "string" ? payload : JSON.stringify(payload);
  return `${JSON.stringify(header)}\n${body}`;
}

/** The recovery frame of a first connection, or with the given fields. */
export function recovery(fields = {}) {
  return frame({ t: "recovery", recovered: null, unrecovered: [], streams: {}, ...fields });
}

/**
 * A WebSocket as a browser has it: the same events, but the error event says
 * nothing (no HTTP status, no message), as in Chromium.
 */
export class BrowserLikeWebSocket {
  constructor(url, protocols) {
    this.inner = new WebSocket(url, protocols);
    this.onopen = null;
    this.onmessage = null;
    this.onclose = null;
    this.onerror = null;
    this.inner.onopen = (event) => this.onopen && this.onopen(event);
    this.inner.onmessage = (event) => this.onmessage && this.onmessage({ data: event.data });
    this.inner.onerror = () => this.onerror && this.onerror({ type: "error" });
    this.inner.onclose = (event) =>
      this.onclose && this.onclose({ code: event.code, reason: event.reason, wasClean: event.wasClean });
  }
  get url() {
    return this.inner.url;
  }
  get protocol() {
    return this.inner.protocol;
  }
  get readyState() {
    return this.inner.readyState;
  }
  set binaryType(value) {
    this.inner.binaryType = value;
  }
  get binaryType() {
    return this.inner.binaryType;
  }
  send(data) {
    this.inner.send(data);
  }
  close(code, reason) {
    this.inner.close(code, reason);
  }
}

/** Options that record what a connection reports into `log`. */
export function recorder(extra = {}) {
  const log = { statuses: [], errors: [], messages: [], recoveries: [], closes: [] };
  const options = {
    WebSocket,
    backoffBase: 10,
    backoffMax: 50,
    onStatus: (s) => log.statuses.push(s),
    onError: (e) => log.errors.push(e),
    onMessage: (payload, meta) => log.messages.push({ payload, meta }),
    onRecover: (r) => log.recoveries.push(r),
    onClose: (c) => log.closes.push(c),
    ...extra,
  };
  return { log, options };
}

/** Wait until `check()` is truthy (polling), or fail after `ms`. */
export async function waitFor(check, ms = 3000, what = "the condition") {
  const end = Date.now() + ms;
  for (;;) {
    const value = check();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The positions claimed in a handshake's svc_recover parameter, decoded. */
export function claimed(request) {
  const raw = request.query.get("svc_recover");
  if (!raw) return null;
  return JSON.parse(Buffer.from(raw, "base64url").toString("utf8"));
}
