// useSvcInfra: a React hook around @svc-infra/websocket. One connection per URL,
// closed on unmount; the latest callbacks are used without reconnecting.
import { useCallback, useEffect, useRef, useState } from "react";
import { connect, type Connection, type Options, type Status, type SvcInfraError } from "@svc-infra/websocket";

export function useSvcInfra<T = unknown>(url: string | null, options: Options<T> = {}) {
  const [status, setStatus] = useState<Status | null>(null);
  const [error, setError] = useState<SvcInfraError | null>(null);
  const connection = useRef<Connection | null>(null);
  const latest = useRef(options);
  latest.current = options;

  useEffect(() => {
    if (url === null) return; // no URL yet (no room, no session): no connection
    const conn = connect<T>(url, {
      ...latest.current,
      token: () => {
        const token = latest.current.token;
        return typeof token === "function" ? token() : token;
      },
      onMessage: (payload, meta) => latest.current.onMessage?.(payload, meta),
      onRecover: (event) => latest.current.onRecover?.(event),
      onStatus: (next) => {
        setStatus(next);
        latest.current.onStatus?.(next);
      },
      onError: (next) => {
        setError(next);
        latest.current.onError?.(next);
      },
    });
    connection.current = conn;
    return () => {
      conn.close();
      connection.current = null;
    };
  }, [url]);

  const send = useCallback((data: unknown) => connection.current?.send(data), []);
  const reconnect = useCallback(() => connection.current?.reconnect(), []);
  return { status, error, send, reconnect };
}
