/*
 * @svc-infra/websocket: the browser client of svc_infra.websocket.
 *
 * Reconnects with backoff and jitter, asks a token function before every attempt,
 * recovers what it missed (the svc-infra.v1 protocol, docs/recovery.md), follows
 * the server's close codes (docs/close-codes.md), and says so when the server keeps
 * refusing its handshake instead of retrying in silence (docs/browser-client.md).
 *
 *   import { connect } from "@svc-infra/websocket";
 *   const conn = connect("/ws/chat/general/", {
 *     token: () => fetchToken(),          // called before every attempt
 *     onMessage: (payload, meta) => ...,  // payload parsed from JSON when it is JSON
 *     onStatus: (status) => ...,          // connecting, open, reconnecting, refused, closed
 *     onRecover: ({recovered, streams}) => ...,
 *     onError: (error) => ...,            // an SvcInfraError: refused, closed (4409...), ...
 *   });
 *   conn.send({message: "hi"});
 *   conn.close();
 *
 * This file is the one source: the ES module of the npm package, and (generated from
 * it by scripts/build.mjs) the script-tag global SvcInfra that the Python package
 * ships as svc_infra/websocket/static/svc_infra/websocket.js. No dependencies; no
 * import statements; every export is a top-level `export const|function|class`.
 * Types: ../index.d.ts.
 */

export const SUBPROTOCOL = "svc-infra.v1";
const RECOVER_PARAM = "svc_recover";

/** The close codes the server sends (docs/close-codes.md), by name. */
export const CloseCode = Object.freeze({
  NORMAL_CLOSURE: 1000,
  GOING_AWAY: 1001,
  ABNORMAL_CLOSURE: 1006,
  POLICY_VIOLATION: 1008,
  MESSAGE_TOO_BIG: 1009,
  INTERNAL_ERROR: 1011,
  SERVICE_RESTART: 1012,
  TRY_AGAIN_LATER: 1013,
  TOO_MANY_CONNECTIONS: 4008,
  TOKEN_EXPIRED: 4401,
  REPLACED: 4409,
  RATE_LIMITED: 4429,
});

// Daphne can only send 1000 and 3000-4999: the server sends these standard codes
// as 4000 + their last three digits (close_codes.DAPHNE_CODES).
const DAPHNE_CODES = {4001: 1001, 4009: 1009, 4011: 1011, 4013: 1013};

// Why the client stops after these codes (the server's reason, when it sent one,
// comes first in the error's message).
const STOP_REASONS = {
  1008: "refused by the server's policy",
  4008: "too many connections for this user",
  4409: "replaced by a newer connection",
};

// As WS_RECONNECT_BACKOFF_BASE / _MAX (seconds there, milliseconds here).
const DEFAULTS = {
  token: null,
  recover: true,
  protocols: [],
  backoffBase: 1000,
  backoffMax: 60000,
  maxAttempts: 0,
  refusedAfter: 3,
  stopWhenRefused: false,
  probe: true,
  WebSocket: null,
  onMessage: null,
  onStatus: null,
  onRecover: null,
  onError: null,
  onClose: null,
};

// A 4401 on a connection younger than this is not followed by an immediate
// reconnect: a token function handing out a token about to expire must not spin.
const EXPIRED_MIN_LIFETIME = 1000;
const PROBE_TIMEOUT = 5000;

/**
 * The standard code a close code stands for: Daphne's 4001, 4009, 4011 and 4013
 * are 1001, 1009, 1011 and 1013; any other code is itself.
 * @param {number} code
 * @returns {number}
 */
export function standardCode(code) {
  return DAPHNE_CODES[code] || code;
}

/**
 * What the client does when an open connection closes with `code`:
 * "end" (1000: the server ended the session; stop quietly), "stop" (1008, 4008,
 * 4409: stop and report why), "now" (4401: reconnect at once with a fresh token),
 * "retry" (anything else, 1001 going away included: reconnect after a backoff).
 * @param {number} code
 * @returns {"end" | "stop" | "now" | "retry"}
 */
export function closeAction(code) {
  const std = standardCode(code);
  if (std === CloseCode.NORMAL_CLOSURE) return "end";
  if (STOP_REASONS[std]) return "stop";
  if (std === CloseCode.TOKEN_EXPIRED) return "now";
  return "retry";
}

/**
 * The delay before the next attempt after `failures` consecutive failed ones: full
 * jitter, random in [0, min(max, base * 2^(failures - 1))), so that the clients of
 * a restarted server do not all come back in the same instant.
 * @param {number} failures at least 1
 * @param {number} base milliseconds
 * @param {number} max milliseconds
 * @param {() => number} [random] a number in [0, 1)
 * @returns {number}
 */
export function backoffDelay(failures, base, max, random) {
  const cap = Math.min(max, base * Math.pow(2, Math.max(0, failures - 1)));
  return (random || Math.random)() * cap;
}

function base64url(text) {
  const bytes = new TextEncoder().encode(text);
  let binary = "";
  for (let i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i]);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function pageUrl() {
  return typeof location !== "undefined" && location ? location.href : undefined;
}

/**
 * The URL of an attempt: `url` resolved against the page (http becomes ws, https
 * wss), with the positions claimed in its `svc_recover` query parameter (URL-safe
 * base64 of {stream: [epoch, offset]}); the app's own parameters stay as they are.
 * @param {string} url
 * @param {Record<string, {epoch: string, offset: number}>} positions
 * @param {string} [base] what a relative `url` is resolved against (the page)
 * @returns {string}
 */
export function recoveryUrl(url, positions, base) {
  const u = new URL(url, base || pageUrl());
  if (u.protocol === "http:") u.protocol = "ws:";
  if (u.protocol === "https:") u.protocol = "wss:";
  u.searchParams.delete(RECOVER_PARAM);
  const data = {};
  let any = false;
  Object.keys(positions || {}).forEach((stream) => {
    data[stream] = [positions[stream].epoch, positions[stream].offset];
    any = true;
  });
  if (any) u.searchParams.set(RECOVER_PARAM, base64url(JSON.stringify(data)));
  return u.toString();
}

/**
 * Split an svc-infra.v1 frame: a JSON header line, "\n", then the payload (a string
 * for text frames, an ArrayBuffer for binary ones). Throws on a frame without one.
 * @param {string | ArrayBuffer} data
 * @returns {{header: Record<string, any>, payload: string | ArrayBuffer}}
 */
export function parseFrame(data) {
  if (typeof data === "string") {
    const cut = data.indexOf("\n");
    if (cut < 0) throw new Error("svc-infra.v1 frame without a header line");
    return {header: JSON.parse(data.slice(0, cut)), payload: data.slice(cut + 1)};
  }
  const bytes = new Uint8Array(data);
  const nl = bytes.indexOf(10);
  if (nl < 0) throw new Error("svc-infra.v1 frame without a header line");
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(0, nl)));
  return {header: header, payload: bytes.slice(nl + 1).buffer};
}

function parsePayload(payload) {
  if (typeof payload !== "string") return payload;
  try {
    return JSON.parse(payload);
  } catch (e) {
    return payload;
  }
}

// Node's ws package says what the server answered ("Unexpected server response:
// 403"); a browser never does.
function httpStatusOf(event) {
  const message = event && (event.message || (event.error && event.error.message));
  const match = /server response: (\d{3})/.exec(message || "");
  return match ? Number(match[1]) : undefined;
}

/**
 * Does anything answer HTTP where the socket goes? A browser cannot see why a
 * handshake failed (docs/browser-client.md), but it can tell "nothing answers"
 * (server down, network) from "a server answers, and refuses the socket". A
 * 502-504 (a proxy with nothing behind it) counts as nothing answering.
 */
function serverAnswers(wsUrl) {
  if (typeof fetch !== "function") return Promise.resolve(true);
  const u = new URL(wsUrl);
  u.protocol = u.protocol === "wss:" ? "https:" : "http:";
  u.search = ""; // no token, no positions
  const controller = typeof AbortController === "function" ? new AbortController() : null;
  const timer = setTimeout(() => {
    if (controller) controller.abort();
  }, PROBE_TIMEOUT);
  return fetch(u.toString(), {
    method: "HEAD",
    mode: "no-cors", // another origin answers opaquely: enough to know it answered
    credentials: "omit",
    cache: "no-store",
    signal: controller ? controller.signal : undefined,
  })
    .then((response) => !(response.status >= 502 && response.status <= 504))
    .catch(() => false)
    .then((answers) => {
      clearTimeout(timer);
      return answers;
    });
}

/**
 * What went wrong, as onError gets it and `connection.error` keeps it.
 * kind: "refused" (handshakes keep failing before the socket opens while the
 * server answers HTTP), "unreachable" (they keep failing and nothing answers),
 * "closed" (the server closed with 1008, 4008 or 4409: the client stops),
 * "token" (the token function threw or rejected), "protocol" (a frame that is not
 * svc-infra.v1), "max-attempts" (maxAttempts consecutive failures). `final` says
 * whether the client stopped.
 */
export class SvcInfraError extends Error {
  constructor(kind, message, details) {
    super(message);
    const d = details || {};
    this.name = "SvcInfraError";
    this.kind = kind;
    this.final = Boolean(d.final);
    this.attempts = d.attempts || 0;
    this.code = d.code;
    this.reason = d.reason;
    this.httpStatus = d.httpStatus;
    if (d.cause !== undefined) this.cause = d.cause;
  }
}

/**
 * Open a connection that reconnects until closed. See index.d.ts for the options.
 * @param {string} url absolute, or relative to the page (http(s) becomes ws(s))
 * @param {object} [options]
 */
export function connect(url, options) {
  const opts = {};
  Object.keys(DEFAULTS).forEach((k) => {
    opts[k] = options && options[k] !== undefined && options[k] !== null ? options[k] : DEFAULTS[k];
  });
  const Socket = opts.WebSocket || (typeof WebSocket !== "undefined" ? WebSocket : null);
  if (typeof Socket !== "function") {
    throw new TypeError(
      "svc-infra: no WebSocket here: pass options.WebSocket (in Node 20, the ws package's)"
    );
  }
  let positions = {}; // stream -> {epoch, offset}
  let ws = null;
  let v1 = false;
  let stopped = false; // no more attempts (close(), or a stop the server asked for)
  let closedByApp = false;
  let failures = 0; // consecutive failed attempts: the backoff
  let refusals = 0; // consecutive handshakes that failed before the socket opened
  let refused = false; // reported as refused in this run of failures
  let unreachable = false; // reported as unreachable in this run of failures
  let timer = null;
  let status = null;
  let lastError = null;
  let generation = 0; // bumped by close() and reconnect(): late callbacks are ignored
  let queue = []; // sent while not open: flushed on open

  function setStatus(next) {
    if (status === next) return;
    status = next;
    if (opts.onStatus) opts.onStatus(next);
  }

  function report(error) {
    lastError = error;
    if (opts.onError) opts.onError(error);
  }

  function halt(finalStatus) {
    stopped = true;
    if (timer !== null) clearTimeout(timer);
    timer = null;
    setStatus(finalStatus);
  }

  function place(stream, info) {
    if (info && typeof info.e === "string" && info.e && typeof info.o === "number") {
      positions[stream] = {epoch: info.e, offset: info.o};
    }
  }

  function usable() {
    failures = 0;
    lastError = null;
    setStatus("open");
    const pending = queue;
    queue = [];
    pending.forEach((data) => ws.send(data));
  }

  function onFrame(event) {
    if (!v1) {
      if (opts.onMessage) opts.onMessage(parsePayload(event.data), {});
      return;
    }
    let frame;
    try {
      frame = parseFrame(event.data);
    } catch (e) {
      report(new SvcInfraError("protocol", "a frame that is not svc-infra.v1: " + e.message, {
        cause: e,
      }));
      return;
    }
    const h = frame.header;
    if (h.t === "recovery") {
      Object.keys(h.streams || {}).forEach((s) => place(s, h.streams[s]));
      usable();
      if (opts.onRecover) {
        opts.onRecover({recovered: h.recovered, streams: h.unrecovered || []});
      }
    } else if (h.t === "stream") {
      place(h.s, h);
      if (h.recovered === false && opts.onRecover) {
        opts.onRecover({recovered: false, streams: [h.s]});
      }
    } else if (h.t === undefined) {
      place(h.s, h);
      if (opts.onMessage) {
        opts.onMessage(parsePayload(frame.payload), {stream: h.s, offset: h.o, epoch: h.e});
      }
    }
  }

  function givingUp() {
    return opts.maxAttempts > 0 && failures >= opts.maxAttempts;
  }

  function retryLater(gen) {
    if (stopped || gen !== generation) return;
    if (givingUp()) {
      report(new SvcInfraError("max-attempts", `gave up after ${failures} failed attempts`, {
        final: true,
        attempts: failures,
      }));
      halt("closed");
      return;
    }
    if (!refused) setStatus("reconnecting");
    timer = setTimeout(attempt, backoffDelay(failures, opts.backoffBase, opts.backoffMax));
  }

  function closed(info, reconnect) {
    if (opts.onClose) opts.onClose(Object.assign({}, info, {reconnect: reconnect}));
  }

  // A handshake that failed before the socket opened: refused, or nothing there?
  function handshakeFailed(gen, info) {
    failures += 1;
    refusals += 1;
    if (!opts.refusedAfter || refusals < opts.refusedAfter || refused) {
      if (info.code !== undefined) closed(info, !givingUp());
      retryLater(gen);
      return;
    }
    const known = info.httpStatus !== undefined || info.cause !== undefined;
    const answers = known || !opts.probe ? Promise.resolve(true) : serverAnswers(info.url);
    answers.then((yes) => {
      if (stopped || gen !== generation) {
        if (info.code !== undefined) closed(info, false);
        return;
      }
      const stop = (yes && opts.stopWhenRefused) || givingUp();
      if (info.code !== undefined) closed(info, !stop);
      const details = {
        final: stop,
        attempts: refusals,
        code: info.code,
        httpStatus: info.httpStatus,
        cause: info.cause,
      };
      if (yes) {
        refused = true;
        const what = info.httpStatus ? `answered HTTP ${info.httpStatus} to` : "refused";
        report(new SvcInfraError(
          "refused",
          `the server ${what} ${refusals} handshakes in a row (a refused token or origin, ` +
            "or a wrong path)",
          details
        ));
        setStatus("refused");
        if (opts.stopWhenRefused) {
          halt("refused");
          return;
        }
      } else if (!unreachable) {
        unreachable = true;
        report(new SvcInfraError(
          "unreachable",
          `${refusals} handshakes in a row failed and nothing answers at ${info.url}`,
          details
        ));
      }
      retryLater(gen);
    });
  }

  function ended(gen, socket, event, opened, openedAt, errorEvent) {
    const rawCode = event && typeof event.code === "number" ? event.code : 1006;
    const info = {
      code: standardCode(rawCode),
      rawCode: rawCode,
      reason: (event && event.reason) || "",
      wasClean: Boolean(event && event.wasClean),
      opened: opened,
      url: socket.url || "",
      httpStatus: opened ? undefined : httpStatusOf(errorEvent),
    };
    if (stopped) {
      closed(info, false);
      setStatus("closed");
      return;
    }
    if (!opened) {
      handshakeFailed(gen, info);
      return;
    }
    const action = closeAction(rawCode);
    if (action === "end") {
      closed(info, false);
      halt("closed");
    } else if (action === "stop") {
      closed(info, false);
      const why = STOP_REASONS[info.code];
      report(new SvcInfraError("closed", `closed with ${info.code}: ${info.reason || why}`, {
        final: true,
        code: info.code,
        reason: info.reason || why,
      }));
      halt("closed");
    } else if (action === "now" && Date.now() - openedAt >= EXPIRED_MIN_LIFETIME) {
      closed(info, true);
      setStatus("reconnecting");
      timer = setTimeout(attempt, 0);
    } else {
      failures += 1;
      closed(info, !givingUp());
      retryLater(gen);
    }
  }

  function openSocket(gen, token) {
    const protocols = (opts.recover ? [SUBPROTOCOL] : []).concat(opts.protocols);
    if (token) protocols.push("bearer", String(token));
    const target = recoveryUrl(url, opts.recover ? positions : {});
    let socket;
    try {
      socket = new Socket(target, protocols);
    } catch (e) {
      // A URL or a token a WebSocket cannot carry (a token with a space): this
      // attempt is refused here, before anything is sent (no socket: no onClose).
      handshakeFailed(gen, {url: target, cause: e});
      return;
    }
    socket.binaryType = "arraybuffer";
    ws = socket;
    let opened = false;
    let openedAt = 0;
    let errorEvent = null;
    socket.onopen = () => {
      if (ws !== socket) return;
      opened = true;
      openedAt = Date.now();
      refusals = 0;
      refused = false;
      unreachable = false;
      v1 = socket.protocol === SUBPROTOCOL;
      if (!v1) usable(); // else: usable once the recovery frame arrives
    };
    socket.onerror = (event) => {
      errorEvent = event;
    };
    socket.onmessage = (event) => {
      if (ws === socket) onFrame(event);
    };
    socket.onclose = (event) => {
      if (ws !== socket) return;
      ws = null;
      ended(gen, socket, event, opened, openedAt, errorEvent);
    };
  }

  function attempt() {
    timer = null;
    if (stopped) return;
    const gen = generation;
    if (!refused) setStatus(status === null ? "connecting" : "reconnecting");
    let token;
    try {
      token = typeof opts.token === "function" ? opts.token() : opts.token;
    } catch (e) {
      token = Promise.reject(e);
    }
    Promise.resolve(token).then(
      (value) => {
        if (!stopped && gen === generation) openSocket(gen, value);
      },
      (e) => {
        if (stopped || gen !== generation) return;
        report(new SvcInfraError("token", "the token function failed: " + (e && e.message), {
          cause: e,
          attempts: failures + 1,
        }));
        failures += 1;
        retryLater(gen);
      }
    );
  }

  attempt();

  return {
    /** Send a string, an ArrayBuffer (or a view, a Blob) as it is, anything else as JSON; queued until open. */
    send(data) {
      const raw =
        typeof data === "string" ||
        data instanceof ArrayBuffer ||
        ArrayBuffer.isView(data) ||
        (typeof Blob !== "undefined" && data instanceof Blob);
      const frame = raw ? data : JSON.stringify(data);
      if (ws && ws.readyState === 1 && status === "open") ws.send(frame);
      else queue.push(frame);
    },
    /** Close for good (no reconnect). */
    close(code, reason) {
      closedByApp = true;
      stopped = true;
      generation += 1;
      if (timer !== null) clearTimeout(timer);
      timer = null;
      if (ws) ws.close(code || 1000, reason || "");
      else setStatus("closed");
    },
    /** Try again now, with a fresh count: after a stop (refused, 4409...), or to cut a backoff short. */
    reconnect() {
      if (closedByApp || ws) return;
      generation += 1;
      if (timer !== null) clearTimeout(timer);
      timer = null;
      stopped = false;
      failures = 0;
      refusals = 0;
      refused = false;
      unreachable = false;
      setStatus("reconnecting");
      attempt();
    },
    get status() {
      return status;
    },
    /** The last error reported (cleared when a connection opens), or null. */
    get error() {
      return lastError;
    },
    /** Where the client stands in each stream: {stream: {epoch, offset}}. */
    get positions() {
      return JSON.parse(JSON.stringify(positions));
    },
  };
}
