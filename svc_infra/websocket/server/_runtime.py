"""What exists only while the manager runs: its channel on the layer, its presence.

One :class:`Runtime` per manager, made before any part and handed to the parts that
read it; :class:`~svc_infra.websocket.server._lifecycle.Lifecycle` fills it on start
and empties it on shutdown. The parts read it as data: none of them calls back into
the manager to learn whether it runs, or with which presence.
"""

from __future__ import annotations

from dataclasses import dataclass

from .protocols import Presence

__all__ = ["Runtime"]


@dataclass(slots=True)
class Runtime:
    """The manager's running state.

    Attributes:
        channel: The manager's channel on the layer; None until started.
        presence: Cluster-wide presence while started with it; None otherwise
            (presence per process).
    """

    channel: str | None = None
    presence: Presence | None = None
