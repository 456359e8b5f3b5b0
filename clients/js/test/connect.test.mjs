// connect() against a real WebSocket server (the ws package): the handshake, v1
// frames, positions and the claims of a reconnect, the token function per attempt.
import assert from "node:assert/strict";
import { afterEach, describe, test } from "node:test";

import { SUBPROTOCOL, connect } from "../src/index.js";
import { claimed, frame, recorder, recovery, startServer, waitFor } from "./helpers.mjs";

let server = null;
let conn = null;

afterEach(async () => {
  if (conn) conn.close();
  conn = null;
  if (server) await server.close();
  server = null;
});

describe("the handshake", () => {
  test("offers svc-infra.v1, then the token as ['bearer', token]", async () => {
    server = await startServer({ onConnection: (ws) => ws.send(recovery()) });
    const { log, options } = recorder({ token: "jwt-1", protocols: ["extra"] });
    conn = connect(server.url(), options);
    await waitFor(() => conn.status === "open", 3000, "open");
    assert.deepEqual(server.requests[0].protocols, [SUBPROTOCOL, "extra", "bearer", "jwt-1"]);
    assert.equal(claimed(server.requests[0]), null, "a first connection claims nothing");
    assert.deepEqual(log.statuses, ["connecting", "open"]);
    assert.deepEqual(log.recoveries, [{ recovered: null, streams: [] }]);
  });

  test("recover: false offers no svc-infra.v1 and claims nothing", async () => {
    server = await startServer();
    const { options } = recorder({ token: () => "t", recover: false });
    conn = connect(server.url(), options);
    await waitFor(() => conn.status === "open", 3000, "open");
    assert.deepEqual(server.requests[0].protocols, ["bearer", "t"]);
  });

  test("without a WebSocket (Node 20 has none) connect says what to pass", () => {
    if (typeof globalThis.WebSocket !== "undefined") return; // Node 22+: a global one
    assert.throws(() => connect("ws://127.0.0.1:1/"), /pass options.WebSocket/);
  });
});

describe("svc-infra.v1 frames", () => {
  test("messages come out parsed, with their stream, offset and epoch; positions follow", async () => {
    server = await startServer({
      onConnection: (ws) => {
        ws.send(recovery({ streams: { "user:ann": { e: "E1", o: 4 }, broadcast: { e: "B", o: 0 } } }));
        ws.send(frame({ s: "room:general", o: 7, e: "R1" }, { type: "message", message: "hi" }));
        ws.send(frame({ s: "user:ann", o: 5, e: "E1" }, "plain text"));
        ws.send(frame({ s: "broadcast" }, { live: true })); // not recorded: no offset
      },
    });
    const { log, options } = recorder();
    conn = connect(server.url(), options);
    await waitFor(() => log.messages.length === 3, 3000, "three messages");
    assert.deepEqual(log.messages[0], {
      payload: { type: "message", message: "hi" },
      meta: { stream: "room:general", offset: 7, epoch: "R1" },
    });
    assert.deepEqual(log.messages[1], {
      payload: "plain text",
      meta: { stream: "user:ann", offset: 5, epoch: "E1" },
    });
    assert.deepEqual(log.messages[2].meta, { stream: "broadcast", offset: undefined, epoch: undefined });
    assert.deepEqual(conn.positions, {
      "user:ann": { epoch: "E1", offset: 5 },
      broadcast: { epoch: "B", offset: 0 },
      "room:general": { epoch: "R1", offset: 7 },
    });
  });

  test("binary frames give the bytes after the header as an ArrayBuffer", async () => {
    server = await startServer({
      onConnection: (ws) => {
        ws.send(recovery());
        const header = Buffer.from('{"s":"user:ann","o":1,"e":"E"}\n');
        ws.send(Buffer.concat([header, Buffer.from([1, 10, 2])]), { binary: true });
      },
    });
    const { log, options } = recorder();
    conn = connect(server.url(), options);
    await waitFor(() => log.messages.length === 1, 3000, "a message");
    assert.ok(log.messages[0].payload instanceof ArrayBuffer);
    assert.deepEqual([...new Uint8Array(log.messages[0].payload)], [1, 10, 2]);
    assert.deepEqual(conn.positions, { "user:ann": { epoch: "E", offset: 1 } });
  });

  test("a stream frame places a stream joined later; recovered: false is reported", async () => {
    server = await startServer({
      onConnection: (ws) => {
        ws.send(recovery());
        ws.send(frame({ t: "stream", s: "room:new", e: "N", o: 12, recovered: true }));
        ws.send(frame({ t: "stream", s: "room:old", e: "O", o: 3, recovered: false }));
      },
    });
    const { log, options } = recorder();
    conn = connect(server.url(), options);
    await waitFor(() => log.recoveries.length === 2, 3000, "two recoveries");
    assert.deepEqual(log.recoveries[1], { recovered: false, streams: ["room:old"] });
    assert.deepEqual(conn.positions, {
      "room:new": { epoch: "N", offset: 12 },
      "room:old": { epoch: "O", offset: 3 },
    });
  });

  test("the socket is open for the app only once the recovery frame is in", async () => {
    let socket = null;
    server = await startServer({ onConnection: (ws) => (socket = ws) });
    const { log, options } = recorder();
    conn = connect(server.url(), options);
    conn.send({ early: 1 });
    await waitFor(() => socket, 3000, "the server's socket");
    const received = [];
    socket.on("message", (data) => received.push(String(data)));
    assert.equal(conn.status, "connecting");
    socket.send(recovery());
    await waitFor(() => received.length === 1, 3000, "the queued message");
    assert.deepEqual(received, ['{"early":1}']);
    assert.deepEqual(log.statuses, ["connecting", "open"]);
  });

  test("a frame that is not v1 is reported and dropped; the connection goes on", async () => {
    server = await startServer({
      onConnection: (ws) => {
        ws.send(recovery());
        ws.send("no header line");
        ws.send(frame({ s: "user:a", o: 1, e: "E" }, { after: true }));
      },
    });
    const { log, options } = recorder();
    conn = connect(server.url(), options);
    await waitFor(() => log.messages.length === 1, 3000, "the message after");
    assert.equal(log.errors.length, 1);
    assert.equal(log.errors[0].kind, "protocol");
    assert.equal(log.errors[0].final, false);
    assert.equal(conn.status, "open");
  });

  test("a server that does not select svc-infra.v1 sends bare payloads", async () => {
    server = await startServer({
      v1: false,
      onConnection: (ws) => {
        ws.send('{"type":"notification"}');
        ws.send("not json");
      },
    });
    const { log, options } = recorder({ token: "t" });
    conn = connect(server.url(), options);
    await waitFor(() => log.messages.length === 2, 3000, "two messages");
    assert.deepEqual(log.messages, [
      { payload: { type: "notification" }, meta: {} },
      { payload: "not json", meta: {} },
    ]);
    assert.equal(conn.status, "open");
  });
});

describe("sending", () => {
  test("strings and bytes as they are, anything else as JSON", async () => {
    const received = [];
    server = await startServer({
      onConnection: (ws) => {
        ws.on("message", (data, binary) => received.push(binary ? [...data] : String(data)));
        ws.send(recovery());
      },
    });
    const { options } = recorder();
    conn = connect(server.url(), options);
    await waitFor(() => conn.status === "open", 3000, "open");
    conn.send("text");
    conn.send(new Uint8Array([1, 2]));
    conn.send(new Uint8Array([3]).buffer);
    conn.send({ message: "hi" });
    conn.send([1, "a"]);
    await waitFor(() => received.length === 5, 3000, "five messages");
    assert.deepEqual(received, ["text", [1, 2], [3], '{"message":"hi"}', '[1,"a"]']);
  });
});

describe("reconnecting", () => {
  test("claims its positions, asks the token function again, and recovers", async () => {
    let tokens = 0;
    server = await startServer({
      onConnection: (ws, request, n) => {
        if (n === 1) {
          ws.send(recovery({ streams: { "user:ann": { e: "E", o: 2 } } }));
          ws.send(frame({ s: "room:general", o: 9, e: "R" }, { n: 9 }));
          ws.send(frame({ s: "user:ann", o: 3, e: "E" }, { n: 3 }));
          setTimeout(() => ws.close(1011), 20); // an internal error: reconnect after a backoff
        } else {
          ws.send(recovery({ recovered: true }));
          ws.send(frame({ s: "room:general", o: 10, e: "R" }, { n: 10 }));
        }
      },
    });
    const { log, options } = recorder({ token: () => `t${++tokens}` });
    conn = connect(server.url("/ws/chat/general/?lang=en"), options);
    await waitFor(() => log.messages.length === 3, 3000, "three messages");
    assert.equal(server.requests.length, 2);
    const [first, second] = server.requests;
    assert.deepEqual(first.protocols, [SUBPROTOCOL, "bearer", "t1"]);
    assert.deepEqual(second.protocols, [SUBPROTOCOL, "bearer", "t2"]);
    assert.deepEqual(claimed(second), { "user:ann": ["E", 3], "room:general": ["R", 9] });
    assert.equal(second.query.get("lang"), "en");
    assert.deepEqual(log.recoveries, [
      { recovered: null, streams: [] },
      { recovered: true, streams: [] },
    ]);
    assert.deepEqual(log.statuses, ["connecting", "open", "reconnecting", "open"]);
    assert.equal(log.closes[0].code, 1011);
    assert.equal(log.closes[0].reconnect, true);
    assert.equal(log.errors.length, 0, "a drop is not an error");
  });

  test("unrecovered streams are reported as the server lists them", async () => {
    server = await startServer({
      onConnection: (ws, request, n) => {
        if (n === 1) {
          ws.send(recovery({ streams: { "room:r": { e: "OLD", o: 5 } } }));
          setTimeout(() => ws.terminate(), 20); // the TCP connection drops: 1006
        } else {
          ws.send(recovery({ recovered: false, unrecovered: ["room:r"], streams: { "room:r": { e: "NEW", o: 0 } } }));
        }
      },
    });
    const { log, options } = recorder();
    conn = connect(server.url(), options);
    await waitFor(() => log.recoveries.length === 2, 3000, "two recoveries");
    assert.deepEqual(log.recoveries[1], { recovered: false, streams: ["room:r"] });
    assert.deepEqual(claimed(server.requests[1]), { "room:r": ["OLD", 5] });
    assert.deepEqual(conn.positions, { "room:r": { epoch: "NEW", offset: 0 } });
    assert.equal(log.closes[0].code, 1006);
  });

  test("a token function that throws or rejects is reported and asked again", async () => {
    let calls = 0;
    server = await startServer({ onConnection: (ws) => ws.send(recovery()) });
    const { log, options } = recorder({
      token: () => {
        calls += 1;
        if (calls === 1) throw new Error("no session");
        if (calls === 2) return Promise.reject(new Error("refresh failed"));
        return Promise.resolve("fresh");
      },
    });
    conn = connect(server.url(), options);
    await waitFor(() => conn.status === "open", 3000, "open");
    assert.deepEqual(log.errors.map((e) => [e.kind, e.final, e.cause.message]), [
      ["token", false, "no session"],
      ["token", false, "refresh failed"],
    ]);
    assert.equal(server.requests.length, 1);
    assert.deepEqual(server.requests[0].protocols.slice(1), ["bearer", "fresh"]);
    assert.equal(conn.error, null, "cleared once open");
  });

  test("close() stops for good, during a backoff too", async () => {
    server = await startServer({ refuse: () => 503 });
    const { log, options } = recorder({ backoffBase: 200, backoffMax: 200, refusedAfter: 0 });
    conn = connect(server.url(), options);
    await waitFor(() => log.closes.length === 1, 3000, "a failed attempt");
    conn.close();
    assert.equal(conn.status, "closed");
    await new Promise((resolve) => setTimeout(resolve, 400));
    assert.equal(server.requests.length, 1);
    assert.equal(log.statuses.at(-1), "closed");
  });

  test("maxAttempts: gives up after that many consecutive failures, and says so", async () => {
    server = await startServer({ refuse: () => 500 });
    const { log, options } = recorder({ maxAttempts: 3, refusedAfter: 0 });
    conn = connect(server.url(), options);
    await waitFor(() => conn.status === "closed", 3000, "closed");
    assert.equal(server.requests.length, 3);
    assert.deepEqual(log.errors.map((e) => [e.kind, e.final, e.attempts]), [["max-attempts", true, 3]]);
    assert.deepEqual(log.closes.map((c) => [c.opened, c.reconnect]), [
      [false, true],
      [false, true],
      [false, false],
    ]);
  });
});
