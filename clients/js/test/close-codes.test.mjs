// What the client does when the server closes an open connection with each code
// (docs/close-codes.md): reconnect at once, after a backoff, stop quietly, or stop
// and say why.
import assert from "node:assert/strict";
import { afterEach, describe, test } from "node:test";

import { connect } from "../src/index.js";
import { recorder, recovery, sleep, startServer, waitFor } from "./helpers.mjs";

let server = null;
let conn = null;

afterEach(async () => {
  if (conn) conn.close();
  conn = null;
  if (server) await server.close();
  server = null;
});

/** A server whose first connection is closed with `code` after `after` ms; later ones stay. */
async function closingWith(code, reason = "", after = 20) {
  return startServer({
    onConnection: (ws, request, n) => {
      ws.send(recovery());
      if (n === 1) setTimeout(() => ws.close(code, reason), after);
    },
  });
}

describe("reconnect", () => {
  for (const code of [1001, 4001, 1011, 4011, 1012, 1013, 4013, 4429, 3000]) {
    test(`after ${code}, with a backoff, quietly`, async () => {
      server = await closingWith(code, "bye");
      const { log, options } = recorder();
      conn = connect(server.url(), options);
      await waitFor(() => server.requests.length === 2 && conn.status === "open", 3000, "back");
      assert.deepEqual(log.statuses, ["connecting", "open", "reconnecting", "open"]);
      assert.equal(log.errors.length, 0);
      const std = { 4001: 1001, 4011: 1011, 4013: 1013 }[code] || code;
      assert.deepEqual(
        [log.closes[0].code, log.closes[0].rawCode, log.closes[0].reason, log.closes[0].reconnect],
        [std, code, "bye", true],
      );
    });
  }

  test("4401 (token expired): at once, with a fresh token, not after the backoff", async () => {
    let tokens = 0;
    // The connection lived over a second: a token that expired, not one born expired.
    server = await closingWith(4401, "token expired", 1100);
    const { log, options } = recorder({
      token: () => `t${++tokens}`,
      backoffBase: 60000,
      backoffMax: 60000,
    });
    conn = connect(server.url(), options);
    await waitFor(() => log.closes.length === 1, 3000, "the 4401");
    const closedAt = Date.now();
    await waitFor(() => conn.status === "open" && server.requests.length === 2, 1000, "back at once");
    assert.ok(Date.now() - closedAt < 500);
    assert.deepEqual(server.requests.map((r) => r.protocols.at(-1)), ["t1", "t2"]);
    assert.equal(log.errors.length, 0);
  });

  test("4401 right after opening: the usual backoff (a token born expired must not spin)", async () => {
    server = await startServer({
      onConnection: (ws) => {
        ws.send(recovery());
        ws.close(4401, "token expired");
      },
    });
    const { log, options } = recorder({ backoffBase: 100, backoffMax: 100 });
    conn = connect(server.url(), options);
    await sleep(600);
    // Immediate reconnects would have made dozens of attempts; a backoff of at most
    // 100 ms (random in [0, 100)) makes at most a few per 100 ms on average.
    assert.ok(server.requests.length < 40, `${server.requests.length} attempts in 600 ms`);
    assert.ok(server.requests.length >= 2);
    assert.equal(log.errors.length, 0);
  });
});

describe("stop", () => {
  test("1000 (the server ended the session): stop quietly, no reconnect, no error", async () => {
    server = await closingWith(1000, "bye");
    const { log, options } = recorder();
    conn = connect(server.url(), options);
    await waitFor(() => conn.status === "closed", 3000, "closed");
    await sleep(150);
    assert.equal(server.requests.length, 1);
    assert.deepEqual(log.statuses, ["connecting", "open", "closed"]);
    assert.equal(log.errors.length, 0);
    assert.equal(conn.error, null);
    assert.deepEqual([log.closes[0].code, log.closes[0].reconnect], [1000, false]);
  });

  const stops = {
    4409: ["replaced by a newer connection", "replaced by a newer connection"],
    4008: ["Too many connections", "Too many connections"],
    1008: ["", "refused by the server's policy"],
  };
  for (const [code, [sent, reason]] of Object.entries(stops)) {
    test(`${code}: stop, and say why (${reason})`, async () => {
      server = await closingWith(Number(code), sent);
      const { log, options } = recorder();
      conn = connect(server.url(), options);
      await waitFor(() => conn.status === "closed", 3000, "closed");
      await sleep(150);
      assert.equal(server.requests.length, 1, "reconnected");
      assert.equal(log.errors.length, 1);
      const [error] = log.errors;
      assert.deepEqual(
        [error.name, error.kind, error.code, error.reason, error.final],
        ["SvcInfraError", "closed", Number(code), reason, true],
      );
      assert.ok(error instanceof Error);
      assert.match(error.message, new RegExp(`${code}: ${reason}`));
      assert.equal(conn.error, error);
      assert.equal(log.closes[0].reconnect, false);
    });
  }

  test("reconnect() starts again after such a stop", async () => {
    server = await closingWith(4409, "replaced by a newer connection");
    const { options } = recorder();
    conn = connect(server.url(), options);
    await waitFor(() => conn.status === "closed", 3000, "closed");
    conn.reconnect();
    await waitFor(() => conn.status === "open" && server.requests.length === 2, 3000, "open again");
  });

  test("after close(), reconnect() does nothing", async () => {
    server = await startServer({ onConnection: (ws) => ws.send(recovery()) });
    const { options } = recorder();
    conn = connect(server.url(), options);
    await waitFor(() => conn.status === "open", 3000, "open");
    conn.close();
    await waitFor(() => conn.status === "closed", 3000, "closed");
    conn.reconnect();
    await sleep(100);
    assert.equal(server.requests.length, 1);
  });
});
