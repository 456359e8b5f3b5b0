// An app on @svc-infra/websocket, as a bundler (Vite, webpack, Next) builds it.
import {
  CloseCode,
  SvcInfraError,
  closeAction,
  connect,
  type Connection,
  type MessageMeta,
  type Status,
} from "@svc-infra/websocket";

interface ChatMessage {
  type: "message" | "system";
  from?: string;
  message: string;
}

declare function fetchToken(): Promise<string>;
declare function show(text: string): void;

const conn: Connection = connect<ChatMessage>("/ws/chat/general/", {
  token: fetchToken, // asked before every attempt
  backoffBase: 500,
  backoffMax: 10_000,
  stopWhenRefused: false,
  onMessage: (msg: ChatMessage, meta: MessageMeta) => {
    show(`${msg.from ?? "system"}: ${msg.message} (${meta.stream ?? "?"} #${meta.offset ?? "-"})`);
  },
  onStatus: (status: Status) => show(status),
  onRecover: ({ recovered, streams }) => {
    if (recovered === false) show(`missed messages in ${streams.join(", ")}: reload them`);
  },
  onError: (error) => {
    if (error.kind === "refused") show(`refused (${error.attempts} attempts): sign in again`);
    if (error.kind === "closed" && error.code === CloseCode.REPLACED) show("opened in another tab");
  },
  onClose: (event) => {
    if (!event.reconnect) show(`closed with ${event.code}: ${event.reason}`);
  },
});

conn.send({ message: "hi" });
const where: Record<string, { epoch: string; offset: number }> = conn.positions;
const last: SvcInfraError | null = conn.error;
if (last instanceof SvcInfraError && last.final) conn.reconnect();
const action: "end" | "stop" | "now" | "retry" = closeAction(4401);
show(`${Object.keys(where).length} ${action} ${conn.status ?? "not started"}`);
conn.close(1000, "bye");

// Errors the compiler must catch: an unknown option, a wrong status.
// @ts-expect-error: not an option
connect("/ws/", { backof: 1 });
// @ts-expect-error: not a status
const wrong: Status = "connected";
void wrong;
