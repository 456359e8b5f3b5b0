/*
 * svc_infra.websocket browser client: reconnects with backoff and recovers what it
 * missed (the svc-infra.v1 protocol, docs/recovery.md). No dependencies, no build.
 *
 *   const conn = SvcInfra.connect("/ws/chat/general/", {
 *     token: () => fetchToken(),          // called before every attempt
 *     onMessage: (payload, meta) => ...,  // payload parsed from JSON when it is JSON
 *     onStatus: (status) => ...,          // connecting, open, reconnecting, closed
 *     onRecover: ({recovered, streams}) => ...,
 *   });
 *   conn.send({message: "hi"});
 *   conn.close();
 *
 * Types: websocket.d.ts beside this file.
 */
(function (root) {
  "use strict";

  var SUBPROTOCOL = "svc-infra.v1";
  var RECOVER_PARAM = "svc_recover";
  // As WS_RECONNECT_BACKOFF_BASE / _MAX (seconds there, milliseconds here).
  var DEFAULTS = {
    token: null,
    recover: true,
    protocols: [],
    backoffBase: 1000,
    backoffMax: 60000,
    maxAttempts: 0,
    onMessage: null,
    onStatus: null,
    onRecover: null,
  };
  var TOKEN_EXPIRED = 4401; // reconnect at once, with a fresh token

  function base64url(text) {
    var bytes = new TextEncoder().encode(text);
    var binary = "";
    for (var i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i]);
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function withPositions(url, positions) {
    var u = new URL(url, root.location ? root.location.href : undefined);
    if (u.protocol === "http:") u.protocol = "ws:";
    if (u.protocol === "https:") u.protocol = "wss:";
    u.searchParams.delete(RECOVER_PARAM);
    var data = {};
    var any = false;
    Object.keys(positions).forEach(function (stream) {
      data[stream] = [positions[stream].epoch, positions[stream].offset];
      any = true;
    });
    if (any) u.searchParams.set(RECOVER_PARAM, base64url(JSON.stringify(data)));
    return u.toString();
  }

  // A v1 frame: header JSON, "\n", payload (text or binary, as the message is).
  function split(data) {
    if (typeof data === "string") {
      var cut = data.indexOf("\n");
      if (cut < 0) throw new Error("svc-infra.v1 frame without a header line");
      return {header: JSON.parse(data.slice(0, cut)), payload: data.slice(cut + 1)};
    }
    var bytes = new Uint8Array(data);
    var nl = bytes.indexOf(10);
    if (nl < 0) throw new Error("svc-infra.v1 frame without a header line");
    var header = JSON.parse(new TextDecoder().decode(bytes.subarray(0, nl)));
    return {header: header, payload: data.slice(nl + 1)};
  }

  function parsePayload(payload) {
    if (typeof payload !== "string") return payload;
    try {
      return JSON.parse(payload);
    } catch (e) {
      return payload;
    }
  }

  function connect(url, options) {
    var opts = {};
    Object.keys(DEFAULTS).forEach(function (k) {
      opts[k] = options && options[k] !== undefined ? options[k] : DEFAULTS[k];
    });
    var positions = {}; // stream -> {epoch, offset}
    var ws = null;
    var v1 = false;
    var stopped = false;
    var failures = 0;
    var timer = null;
    var status = null;
    var queue = []; // sent while not open: flushed on open

    function setStatus(next) {
      if (status === next) return;
      status = next;
      if (opts.onStatus) opts.onStatus(next);
    }

    function place(stream, info) {
      if (info && typeof info.e === "string" && info.e && typeof info.o === "number") {
        positions[stream] = {epoch: info.e, offset: info.o};
      }
    }

    function opened() {
      failures = 0;
      setStatus("open");
      var pending = queue;
      queue = [];
      pending.forEach(function (data) { ws.send(data); });
    }

    function onFrame(event) {
      if (!v1) {
        if (opts.onMessage) opts.onMessage(parsePayload(event.data), {});
        return;
      }
      var frame = split(event.data);
      var h = frame.header;
      if (h.t === "recovery") {
        Object.keys(h.streams || {}).forEach(function (s) { place(s, h.streams[s]); });
        opened();
        if (opts.onRecover) opts.onRecover({recovered: h.recovered, streams: h.unrecovered || []});
      } else if (h.t === "stream") {
        place(h.s, h);
        if (h.recovered === false && opts.onRecover) {
          opts.onRecover({recovered: false, streams: [h.s]});
        }
      } else if (h.t === undefined) {
        if (typeof h.o === "number" && typeof h.e === "string") {
          positions[h.s] = {epoch: h.e, offset: h.o};
        }
        if (opts.onMessage) {
          opts.onMessage(parsePayload(frame.payload), {stream: h.s, offset: h.o, epoch: h.e});
        }
      }
    }

    function schedule(code) {
      failures += 1;
      if (opts.maxAttempts && failures > opts.maxAttempts) {
        stopped = true;
        setStatus("closed");
        return;
      }
      // Full jitter: a restarted server's clients do not all come back at once.
      var cap = Math.min(opts.backoffMax, opts.backoffBase * Math.pow(2, failures - 1));
      var delay = code === TOKEN_EXPIRED ? 0 : Math.random() * cap;
      setStatus("reconnecting");
      timer = setTimeout(open, delay);
    }

    function open() {
      timer = null;
      if (stopped) return;
      setStatus(status === null ? "connecting" : "reconnecting");
      Promise.resolve(typeof opts.token === "function" ? opts.token() : opts.token)
        .then(function (token) {
          if (stopped) return;
          var protocols = (opts.recover ? [SUBPROTOCOL] : []).concat(opts.protocols);
          if (token) protocols.push("bearer", String(token));
          var target = opts.recover ? withPositions(url, positions) : withPositions(url, {});
          var socket = new WebSocket(target, protocols);
          socket.binaryType = "arraybuffer";
          ws = socket;
          socket.onopen = function () {
            v1 = socket.protocol === SUBPROTOCOL;
            if (!v1) opened(); // else: open once the recovery frame arrives
          };
          socket.onmessage = onFrame;
          socket.onclose = function (event) {
            if (ws !== socket) return;
            ws = null;
            if (stopped) setStatus("closed");
            else schedule(event.code);
          };
        })
        .catch(function () {
          if (!stopped) schedule(0); // the token function failed: try again later
        });
    }

    open();

    return {
      /** Send a string, an ArrayBuffer, or anything else as JSON; queued until open. */
      send: function (data) {
        var frame = typeof data === "string" || data instanceof ArrayBuffer ||
          ArrayBuffer.isView(data) ? data : JSON.stringify(data);
        if (ws && ws.readyState === 1 && status === "open") ws.send(frame);
        else queue.push(frame);
      },
      /** Close for good (no reconnect). */
      close: function (code, reason) {
        stopped = true;
        if (timer !== null) clearTimeout(timer);
        if (ws) ws.close(code || 1000, reason || "");
        else setStatus("closed");
      },
      get status() { return status; },
      /** Where the client stands in each stream: {stream: {epoch, offset}}. */
      get positions() { return JSON.parse(JSON.stringify(positions)); },
    };
  }

  root.SvcInfra = {connect: connect, SUBPROTOCOL: SUBPROTOCOL};
})(typeof window !== "undefined" ? window : globalThis);
