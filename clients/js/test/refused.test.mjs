// Handshakes that fail before the socket opens: reported as refused (the server
// answers, and will not take the socket) or unreachable (nothing answers), then
// retried with backoff or stopped, as the options say.
import assert from "node:assert/strict";
import { afterEach, describe, test } from "node:test";

import { connect } from "../src/index.js";
import {
  BrowserLikeWebSocket,
  deadPort,
  recorder,
  recovery,
  sleep,
  startServer,
  waitFor,
} from "./helpers.mjs";

let server = null;
let conn = null;

afterEach(async () => {
  if (conn) conn.close();
  conn = null;
  if (server) await server.close();
  server = null;
});

/** A server that refuses with 403 every handshake whose token is not "good". */
function checkingTokens(extra = {}) {
  return startServer({
    refuse: (request) => (request.protocols.at(-1) === "good" ? 0 : 403),
    onConnection: (ws) => ws.send(recovery()),
    ...extra,
  });
}

describe("refused", () => {
  test("reported after 3 handshakes in a row; retried; a refreshed token recovers by itself", async () => {
    server = await checkingTokens();
    let token = "expired";
    const asked = [];
    const { log, options } = recorder({
      token: () => {
        asked.push(token);
        return token;
      },
    });
    conn = connect(server.url(), options);
    await waitFor(() => conn.status === "refused", 3000, "refused");
    assert.equal(log.errors.length, 1);
    const [error] = log.errors;
    assert.deepEqual(
      [error.kind, error.final, error.attempts, error.httpStatus, error.code],
      ["refused", false, 3, 403, 1006],
    );
    assert.match(error.message, /answered HTTP 403 to 3 handshakes in a row/);
    assert.equal(server.probes.length, 0, "the status was known: no probe");
    assert.deepEqual(log.statuses, ["connecting", "reconnecting", "refused"]);

    await waitFor(() => server.requests.length >= 5, 3000, "more attempts");
    assert.equal(conn.status, "refused", "stays refused while refused");
    assert.equal(log.errors.length, 1, "reported once");
    token = "good";
    await waitFor(() => conn.status === "open", 3000, "open with the new token");
    assert.equal(asked.length, server.requests.length, "the token function is asked before every attempt");
    assert.equal(conn.error, null);
    assert.deepEqual(log.closes.slice(0, 3).map((c) => [c.opened, c.httpStatus]), [
      [false, 403],
      [false, 403],
      [false, 403],
    ]);
  });

  test("in a browser (no HTTP status): a HEAD to the socket's URL tells that the server answers", async () => {
    server = await checkingTokens();
    const { log, options } = recorder({ WebSocket: BrowserLikeWebSocket, token: "bad" });
    conn = connect(server.url("/ws/chat/general/?room=x"), options);
    await waitFor(() => conn.status === "refused", 3000, "refused");
    assert.equal(log.errors[0].kind, "refused");
    assert.equal(log.errors[0].httpStatus, undefined);
    assert.match(log.errors[0].message, /the server refused 3 handshakes in a row/);
    assert.deepEqual(server.probes, [{ method: "HEAD", url: "/ws/chat/general/" }]);
  });

  test("stopWhenRefused: stops after reporting; reconnect() tries again", async () => {
    server = await checkingTokens();
    let token = "bad";
    const { log, options } = recorder({ token: () => token, stopWhenRefused: true });
    conn = connect(server.url(), options);
    await waitFor(() => conn.status === "refused", 3000, "refused");
    await sleep(200);
    assert.equal(server.requests.length, 3, "stopped");
    assert.equal(conn.status, "refused");
    assert.deepEqual([conn.error.kind, conn.error.final], ["refused", true]);
    assert.deepEqual(log.closes.map((c) => c.reconnect), [true, true, false]);
    token = "good";
    conn.reconnect();
    await waitFor(() => conn.status === "open", 3000, "open");
    assert.deepEqual(log.statuses, ["connecting", "reconnecting", "refused", "reconnecting", "open"]);
  });

  test("refusedAfter sets how many; 0 never reports", async () => {
    server = await checkingTokens();
    const one = recorder({ token: "bad", refusedAfter: 1 });
    conn = connect(server.url(), one.options);
    await waitFor(() => conn.status === "refused", 3000, "refused");
    assert.equal(one.log.errors[0].attempts, 1);
    assert.equal(one.log.closes.filter((c) => !c.reconnect).length, 0);
    conn.close();

    const never = recorder({ token: "bad", refusedAfter: 0 });
    conn = connect(server.url(), never.options);
    await waitFor(() => server.requests.length >= 8, 3000, "attempts");
    assert.equal(never.log.errors.length, 0);
    assert.equal(conn.status, "reconnecting");
  });

  test("probe: false reports refused without asking", async () => {
    server = await checkingTokens();
    const { log, options } = recorder({ WebSocket: BrowserLikeWebSocket, token: "bad", probe: false });
    conn = connect(server.url(), options);
    await waitFor(() => conn.status === "refused", 3000, "refused");
    assert.equal(log.errors[0].kind, "refused");
    assert.equal(server.probes.length, 0);
  });

  test("a token a WebSocket cannot carry counts as refused here, with the cause", async () => {
    server = await checkingTokens();
    let token = "has a space";
    const { log, options } = recorder({ token: () => token });
    conn = connect(server.url(), options);
    await waitFor(() => conn.status === "refused", 3000, "refused");
    assert.equal(server.requests.length, 0, "nothing was sent");
    assert.ok(log.errors[0].cause instanceof Error);
    token = "good";
    await waitFor(() => conn.status === "open", 3000, "open");
  });

  test("once a socket opens, the status is no longer refused", async () => {
    server = await startServer({
      refuse: (request, n) => (n <= 3 ? 403 : 0),
      onConnection: (ws, request, n) => (n === 4 ? ws.close(1011) : ws.send(recovery())),
    });
    const { log, options } = recorder();
    conn = connect(server.url(), options);
    await waitFor(() => conn.status === "open", 3000, "open");
    assert.deepEqual(log.statuses, ["connecting", "reconnecting", "refused", "reconnecting", "open"]);
  });

  test("a socket accepted then closed (a draining server's 1001) is not a refusal", async () => {
    server = await startServer({ onConnection: (ws) => ws.close(1001, "server shutting down") });
    const { log, options } = recorder();
    conn = connect(server.url(), options);
    await waitFor(() => server.requests.length >= 6, 3000, "attempts");
    assert.equal(log.errors.length, 0);
    assert.equal(conn.status, "reconnecting");
  });
});

describe("unreachable", () => {
  test("nothing listening: reported once as unreachable, never refused; retried", async () => {
    const port = await deadPort();
    const { log, options } = recorder({ WebSocket: BrowserLikeWebSocket });
    conn = connect(`ws://127.0.0.1:${port}/ws/`, options);
    await waitFor(() => log.errors.length === 1, 3000, "a report");
    assert.deepEqual([log.errors[0].kind, log.errors[0].final], ["unreachable", false]);
    assert.equal(conn.status, "reconnecting");
    await waitFor(() => log.closes.length >= 6, 3000, "more attempts");
    assert.equal(log.errors.length, 1, "reported once");
    assert.ok(!log.statuses.includes("refused"));
  });

  test("a proxy answering 502 (nothing behind it) is unreachable, not refused", async () => {
    server = await startServer({ refuse: () => 502, httpStatus: 502 });
    const { log, options } = recorder({ WebSocket: BrowserLikeWebSocket, stopWhenRefused: true });
    conn = connect(server.url(), options);
    await waitFor(() => log.errors.length === 1, 3000, "a report");
    assert.equal(log.errors[0].kind, "unreachable");
    await waitFor(() => server.requests.length >= 5, 3000, "more attempts: not stopped");
  });

  test("the server coming back ends it: open, and the next run of failures is counted afresh", async () => {
    let up = false;
    server = await startServer({
      refuse: () => (up ? 0 : 502),
      httpStatus: 502,
      onConnection: (ws) => ws.send(recovery()),
    });
    const { log, options } = recorder({ WebSocket: BrowserLikeWebSocket });
    conn = connect(server.url(), options);
    await waitFor(() => log.errors.length === 1, 3000, "unreachable");
    up = true;
    await waitFor(() => conn.status === "open", 3000, "open");
    assert.equal(conn.error, null);
  });
});
