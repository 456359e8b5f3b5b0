// Types of svc_infra/websocket.js (the global SvcInfra). See docs/recovery.md.

declare namespace SvcInfra {
  type Status = "connecting" | "open" | "reconnecting" | "closed";

  interface MessageMeta {
    /** "user:<id>", "room:<name>" or "broadcast" (absent without svc-infra.v1). */
    stream?: string;
    /** The message's offset in its stream, when the server recorded it. */
    offset?: number;
    epoch?: string;
  }

  interface RecoverEvent {
    /** null: nothing to recover; true: every gap replayed; false: see streams. */
    recovered: boolean | null;
    /** Streams whose missed messages could not be replayed. */
    streams: string[];
  }

  interface Options {
    /** A token, or a function returning one (or a Promise of one), called before
     * every attempt; sent as the ["bearer", token] subprotocols. */
    token?: string | null | (() => string | null | Promise<string | null>);
    /** Offer svc-infra.v1 and recover missed messages (default true). */
    recover?: boolean;
    /** Extra subprotocols to offer. */
    protocols?: string[];
    /** Milliseconds; reconnect delays are random in [0, min(max, base * 2^n)). */
    backoffBase?: number;
    backoffMax?: number;
    /** Consecutive failed attempts before giving up (0: never). */
    maxAttempts?: number;
    /** A message: parsed from JSON when it is JSON, else a string or an ArrayBuffer. */
    onMessage?: (payload: unknown, meta: MessageMeta) => void;
    onStatus?: (status: Status) => void;
    onRecover?: (event: RecoverEvent) => void;
  }

  interface Connection {
    /** Strings and ArrayBuffers as they are, anything else as JSON; queued until open. */
    send(data: unknown): void;
    /** Close for good: no reconnect. */
    close(code?: number, reason?: string): void;
    readonly status: Status | null;
    readonly positions: Record<string, {epoch: string; offset: number}>;
  }

  function connect(url: string, options?: Options): Connection;
  const SUBPROTOCOL: "svc-infra.v1";
}
