// The v1 wire format, claims, backoff and the close-code table, without sockets.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";

import {
  CloseCode,
  SUBPROTOCOL,
  backoffDelay,
  closeAction,
  parseFrame,
  recoveryUrl,
  standardCode,
} from "../src/index.js";

describe("parseFrame", () => {
  test("a text frame: the header line, then the payload as sent", () => {
    const { header, payload } = parseFrame('{"s":"room:general","o":18,"e":"17646"}\n{"type":"message"}');
    assert.deepEqual(header, { s: "room:general", o: 18, e: "17646" });
    assert.equal(payload, '{"type":"message"}');
  });

  test("the payload may itself contain newlines, and may be empty (control frames)", () => {
    assert.equal(parseFrame('{"s":"user:1"}\nline 1\nline 2').payload, "line 1\nline 2");
    const control = parseFrame('{"t":"recovery","recovered":null}\n');
    assert.equal(control.header.t, "recovery");
    assert.equal(control.payload, "");
  });

  test("a binary frame: the header as UTF-8, a newline byte, the bytes unchanged", () => {
    const header = new TextEncoder().encode('{"s":"user:é","o":1,"e":"x"}\n');
    const bytes = new Uint8Array([0, 10, 255, 1]);
    const data = new Uint8Array(header.length + bytes.length);
    data.set(header);
    data.set(bytes, header.length);
    const { header: h, payload } = parseFrame(data.buffer);
    assert.deepEqual(h, { s: "user:é", o: 1, e: "x" });
    assert.ok(payload instanceof ArrayBuffer);
    assert.deepEqual([...new Uint8Array(payload)], [0, 10, 255, 1]);
  });

  test("a frame without a header line, or with a header that is not JSON, throws", () => {
    assert.throws(() => parseFrame("no header"), /without a header line/);
    assert.throws(() => parseFrame(new Uint8Array([1, 2, 3]).buffer), /without a header line/);
    assert.throws(() => parseFrame("{nope\n{}"), SyntaxError);
  });
});

describe("recoveryUrl", () => {
  const decode = (url) =>
    JSON.parse(Buffer.from(new URL(url).searchParams.get("svc_recover"), "base64url").toString());

  test("claims every position as {stream: [epoch, offset]} in URL-safe base64, no padding", () => {
    const url = recoveryUrl("ws://h/ws/chat/general/", {
      "room:general": { epoch: "17646", offset: 5 },
      "user:42": { epoch: "9f3c", offset: 17 },
    });
    assert.deepEqual(decode(url), { "room:general": ["17646", 5], "user:42": ["9f3c", 17] });
    assert.match(new URL(url).searchParams.get("svc_recover"), /^[A-Za-z0-9_-]+$/);
  });

  test("keeps the app's own parameters and replaces an earlier claim", () => {
    const url = recoveryUrl("ws://h/ws/x?room=r&svc_recover=old", { broadcast: { epoch: "e", offset: 1 } });
    const params = new URL(url).searchParams;
    assert.equal(params.get("room"), "r");
    assert.equal(params.getAll("svc_recover").length, 1);
    assert.deepEqual(decode(url), { broadcast: ["e", 1] });
  });

  test("no position, no parameter; an earlier claim is dropped", () => {
    assert.equal(recoveryUrl("ws://h/ws/x?a=1&svc_recover=old", {}), "ws://h/ws/x?a=1");
  });

  test("a relative URL is resolved against the page, http(s) becoming ws(s)", () => {
    assert.equal(recoveryUrl("/ws/chat/r/", {}, "http://example.org/chat"), "ws://example.org/ws/chat/r/");
    assert.equal(recoveryUrl("/ws/", {}, "https://example.org/"), "wss://example.org/ws/");
    assert.equal(recoveryUrl("http://a:8000/ws/", {}), "ws://a:8000/ws/");
  });

  test("epochs and streams outside ASCII survive the round trip", () => {
    const url = recoveryUrl("ws://h/ws/", { "room:café": { epoch: "é€", offset: 3 } });
    assert.deepEqual(decode(url), { "room:café": ["é€", 3] });
  });
});

describe("backoffDelay", () => {
  test("full jitter: random in [0, min(max, base * 2^(n-1)))", () => {
    assert.equal(backoffDelay(1, 1000, 60000, () => 0), 0);
    assert.equal(backoffDelay(1, 1000, 60000, () => 0.5), 500);
    assert.equal(backoffDelay(3, 1000, 60000, () => 0.5), 2000);
    assert.equal(backoffDelay(10, 1000, 60000, () => 0.5), 30000); // capped at max
    assert.equal(backoffDelay(50, 1000, 60000, () => 0.999), 59940);
  });

  test("the delays of many clients spread over the whole window", () => {
    const delays = Array.from({ length: 2000 }, () => backoffDelay(4, 100, 60000));
    assert.ok(delays.every((d) => d >= 0 && d < 800));
    assert.ok(Math.min(...delays) < 80 && Math.max(...delays) > 720, "not spread");
    assert.ok(new Set(delays).size > 1900, "not random");
  });
});

describe("close codes", () => {
  test("Daphne's 4001, 4009, 4011, 4013 stand for 1001, 1009, 1011, 1013", () => {
    assert.equal(standardCode(4001), 1001);
    assert.equal(standardCode(4009), 1009);
    assert.equal(standardCode(4011), 1011);
    assert.equal(standardCode(4013), 1013);
    for (const code of [1000, 1001, 1006, 4008, 4401, 4409, 4429, 4000, 4002]) {
      assert.equal(standardCode(code), code);
    }
  });

  test("what the client does after each code", () => {
    const table = {
      1000: "end", // the server ended the session: stop quietly
      1001: "retry", // going away: a drain or a restart; come back after a backoff
      4001: "retry",
      1005: "retry",
      1006: "retry",
      1008: "stop", // policy violation: stop with the reason
      1009: "retry",
      4009: "retry",
      1011: "retry",
      4011: "retry",
      1012: "retry",
      1013: "retry",
      4013: "retry",
      4008: "stop", // too many connections
      4401: "now", // token expired: at once, with a fresh token
      4409: "stop", // replaced by a newer connection: coming back would take its place
      4429: "retry",
    };
    for (const [code, action] of Object.entries(table)) {
      assert.equal(closeAction(Number(code)), action, `code ${code}`);
    }
  });

  test("the names and numbers are the server's (close_codes.CloseCode)", () => {
    // Read from the Python source, so that a code added there is not missed here.
    const python = readFileSync(new URL("../../../svc_infra/websocket/close_codes.py", import.meta.url), "utf8");
    const members = [...python.matchAll(/^ {4}([A-Z_]+) = (\d+|_Std\.([A-Z_]+)\.value)$/gm)];
    assert.ok(members.length >= 12, "CloseCode members not found in close_codes.py");
    for (const [, name, value] of members) {
      assert.ok(name in CloseCode, `CloseCode.${name} is missing`);
      if (/^\d+$/.test(value)) assert.equal(CloseCode[name], Number(value), name);
    }
    assert.equal(Object.keys(CloseCode).length, members.length);
    assert.ok(Object.isFrozen(CloseCode));
    assert.equal(SUBPROTOCOL, "svc-infra.v1");
  });
});
