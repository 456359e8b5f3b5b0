// Just enough of React's and Vue's signatures to type-check the hook and the
// composable in docs/browser-client.md (they are examples: not dependencies).
declare module "react" {
  export function useState<S>(initial: S | (() => S)): [S, (value: S | ((previous: S) => S)) => void];
  export function useEffect(effect: () => void | (() => void), deps?: readonly unknown[]): void;
  export function useRef<T>(initial: T): { current: T };
  export function useCallback<F extends (...args: never[]) => unknown>(callback: F, deps: readonly unknown[]): F;
}

declare module "vue" {
  export interface Ref<T> {
    value: T;
  }
  export type MaybeRefOrGetter<T> = T | Ref<T> | (() => T);
  export function shallowRef<T>(value: T): Ref<T>;
  export function toValue<T>(source: MaybeRefOrGetter<T>): T;
  export function watch<T>(
    source: () => T,
    callback: (value: T, previous: T | undefined) => void,
    options?: { immediate?: boolean },
  ): () => void;
  export function onScopeDispose(callback: () => void): void;
}
