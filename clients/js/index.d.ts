// Types of @svc-infra/websocket (src/index.js). Hand-written; scripts/build.mjs
// also wraps them as the global namespace SvcInfra (websocket.d.ts, for the script
// tag). Keep every declaration an `export` without `declare`: both must compile.

/**
 * Where the client is. `refused`: the last few handshakes failed before the socket
 * opened while the server answers HTTP (a refused token or origin, a wrong path);
 * the client keeps trying with backoff unless `stopWhenRefused`. `closed`: stopped
 * for good (close(), 1000 from the server, 1008/4008/4409, maxAttempts).
 */
export type Status = "connecting" | "open" | "reconnecting" | "refused" | "closed";

export interface MessageMeta {
  /** "user:<id>", "room:<name>" or "broadcast" (absent without svc-infra.v1). */
  stream?: string;
  /** The message's offset in its stream, when the server recorded it. */
  offset?: number;
  epoch?: string;
}

export interface RecoverEvent {
  /** null: nothing to recover; true: every gap replayed; false: see streams. */
  recovered: boolean | null;
  /** Streams whose missed messages could not be replayed. */
  streams: string[];
}

export interface CloseEvent {
  /** The standard code (Daphne's 4001, 4009, 4011, 4013 read as 1001, 1009, 1011, 1013). */
  code: number;
  /** The code as received. */
  rawCode: number;
  reason: string;
  wasClean: boolean;
  /** Whether the socket had opened: false for a failed handshake. */
  opened: boolean;
  /** Whether the client will try again. */
  reconnect: boolean;
  /** The URL of this attempt (with its svc_recover claim). */
  url: string;
  /** The HTTP status that refused the handshake, where the WebSocket says it
   * (Node's ws package does; a browser never does). */
  httpStatus?: number;
}

export type ErrorKind = "refused" | "unreachable" | "closed" | "token" | "protocol" | "max-attempts";

/** What went wrong: onError gets it, `connection.error` keeps the last one. */
export class SvcInfraError extends Error {
  constructor(kind: ErrorKind, message: string, details?: Partial<SvcInfraError>);
  readonly name: "SvcInfraError";
  /**
   * - `refused`: `refusedAfter` handshakes in a row failed before the socket opened,
   *   and the server answers HTTP (or said why: `httpStatus`).
   * - `unreachable`: they failed and nothing answers (server down, network, a
   *   proxy answering 502-504). Reported once per run of failures; the client retries.
   * - `closed`: the server closed with 1008, 4008 or 4409 (`code`, `reason`); the client stopped.
   * - `token`: the token function threw or rejected (`cause`); the client retries.
   * - `protocol`: a frame that is not svc-infra.v1 (`cause`); the frame is dropped.
   * - `max-attempts`: `maxAttempts` consecutive failures; the client stopped.
   */
  readonly kind: ErrorKind;
  /** Whether the client stopped (no more attempts until `reconnect()`). */
  readonly final: boolean;
  /** Consecutive failed attempts when this was reported. */
  readonly attempts: number;
  /** The close code, when there was one (standard form). */
  readonly code?: number;
  readonly reason?: string;
  /** The HTTP status of a refused handshake, where the WebSocket implementation says it. */
  readonly httpStatus?: number;
  readonly cause?: unknown;
}

/** The minimal WebSocket the client needs: the browser's, or Node's ws package's. */
export interface WebSocketLike {
  binaryType: string;
  readonly protocol: string;
  readonly readyState: number;
  readonly url: string;
  onopen: ((event: any) => void) | null;
  onmessage: ((event: { data: any }) => void) | null;
  onclose: ((event: { code: number; reason: string; wasClean: boolean }) => void) | null;
  onerror: ((event: any) => void) | null;
  send(data: any): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

export type TokenSource =
  | string
  | null
  | undefined
  | (() => string | null | undefined | Promise<string | null | undefined>);

export interface Options<T = unknown> {
  /** A token, or a function returning one (or a Promise of one), called before
   * every attempt; sent as the ["bearer", token] subprotocols. */
  token?: TokenSource;
  /** Offer svc-infra.v1 and recover missed messages (default true). */
  recover?: boolean;
  /** Extra subprotocols to offer. */
  protocols?: string[];
  /** Milliseconds; reconnect delays are random in [0, min(max, base * 2^(n-1))) after
   * n consecutive failures (defaults 1000 and 60000, as WS_RECONNECT_BACKOFF_*). */
  backoffBase?: number;
  backoffMax?: number;
  /** Consecutive failed attempts before giving up (0, the default: never). */
  maxAttempts?: number;
  /** Consecutive handshakes failing before the socket opens after which the client
   * reports `refused` or `unreachable` (default 3; 0: never). */
  refusedAfter?: number;
  /** Stop once refused (status stays "refused"; `reconnect()` starts again). Default
   * false: keep trying with backoff up to backoffMax, asking the token function
   * each time, so a refreshed token recovers by itself. */
  stopWhenRefused?: boolean;
  /** Tell refused from unreachable with one HTTP HEAD to the socket's URL (no
   * query, no credentials) when reporting (default true). false: report refused. */
  probe?: boolean;
  /** The WebSocket class: the global one by default (Node 20 has none: pass the ws package's). */
  WebSocket?: WebSocketConstructor;
  /** A message: parsed from JSON when it is JSON, else a string or an ArrayBuffer. */
  onMessage?: (payload: T, meta: MessageMeta) => void;
  onStatus?: (status: Status) => void;
  onRecover?: (event: RecoverEvent) => void;
  onError?: (error: SvcInfraError) => void;
  /** Every time a socket ends, or a handshake fails. */
  onClose?: (event: CloseEvent) => void;
}

export interface Connection {
  /** Strings, ArrayBuffers, views and Blobs as they are, anything else as JSON; queued until open. */
  send(data: unknown): void;
  /** Close for good: no reconnect. */
  close(code?: number, reason?: string): void;
  /** Try again now with a fresh count (after a stop, or to cut a backoff short);
   * nothing after close() or while a socket is open or opening. */
  reconnect(): void;
  readonly status: Status | null;
  /** The last error reported, cleared when a connection opens. */
  readonly error: SvcInfraError | null;
  readonly positions: Record<string, { epoch: string; offset: number }>;
}

/** Open a connection that reconnects until closed. `url` is absolute, or relative to
 * the page (http(s) becomes ws(s)). `T` types the payloads onMessage receives. */
export function connect<T = unknown>(url: string, options?: Options<T>): Connection;

export const SUBPROTOCOL: "svc-infra.v1";

export const CloseCode: {
  readonly NORMAL_CLOSURE: 1000;
  readonly GOING_AWAY: 1001;
  readonly ABNORMAL_CLOSURE: 1006;
  readonly POLICY_VIOLATION: 1008;
  readonly MESSAGE_TOO_BIG: 1009;
  readonly INTERNAL_ERROR: 1011;
  readonly SERVICE_RESTART: 1012;
  readonly TRY_AGAIN_LATER: 1013;
  readonly TOO_MANY_CONNECTIONS: 4008;
  readonly TOKEN_EXPIRED: 4401;
  readonly REPLACED: 4409;
  readonly RATE_LIMITED: 4429;
};

/** Daphne's 4001, 4009, 4011 and 4013 as 1001, 1009, 1011 and 1013; others unchanged. */
export function standardCode(code: number): number;

/** What the client does when an open connection closes with `code`: "end" (1000),
 * "stop" (1008, 4008, 4409), "now" (4401), "retry" (anything else). */
export function closeAction(code: number): "end" | "stop" | "now" | "retry";

/** The reconnect delay after `failures` consecutive failures (full jitter). */
export function backoffDelay(failures: number, base: number, max: number, random?: () => number): number;

/** The URL of an attempt, claiming `positions` in its svc_recover parameter. */
export function recoveryUrl(
  url: string,
  positions: Record<string, { epoch: string; offset: number }>,
  base?: string,
): string;

/** Split an svc-infra.v1 frame into its JSON header and its payload. */
export function parseFrame(data: string | ArrayBuffer): {
  header: Record<string, any>;
  payload: string | ArrayBuffer;
};
