"""FastAPI: WebSocket auth types and guards (:mod:`.dx`), routers (:mod:`.dual`)."""
