// useSvcInfra: a Vue 3 composable around @svc-infra/websocket. Reconnects when the
// URL changes, closes with the component (or effect scope).
import { onScopeDispose, shallowRef, toValue, watch, type MaybeRefOrGetter } from "vue";
import { connect, type Connection, type Options, type Status, type SvcInfraError } from "@svc-infra/websocket";

export function useSvcInfra<T = unknown>(url: MaybeRefOrGetter<string | null>, options: Options<T> = {}) {
  const status = shallowRef<Status | null>(null);
  const error = shallowRef<SvcInfraError | null>(null);
  let conn: Connection | null = null;

  watch(
    () => toValue(url),
    (value) => {
      conn?.close();
      conn = null;
      status.value = null;
      error.value = null;
      if (!value) return;
      conn = connect<T>(value, {
        ...options,
        onStatus: (next) => {
          status.value = next;
          options.onStatus?.(next);
        },
        onError: (next) => {
          error.value = next;
          options.onError?.(next);
        },
      });
    },
    { immediate: true },
  );
  onScopeDispose(() => conn?.close());

  return {
    status,
    error,
    send: (data: unknown) => conn?.send(data),
    reconnect: () => conn?.reconnect(),
  };
}
