"""The outbox relay: publishes committed :class:`~.models.OutboxMessage` rows.

``python manage.py ws_outbox`` runs one until SIGTERM (it finishes the batch in
hand); ``WS_RELAY_IN_PROCESS=true`` runs one in each server process instead.

Each round is one database transaction: lock the oldest pending rows (``SELECT
... FOR UPDATE SKIP LOCKED`` where the database has it, so several relays share
the work), publish them through the manager, mark them sent, commit. Within a
round, each target's rows go out one after the other in id order, and different
targets' rows concurrently (up to ``CONCURRENCY`` at a time): a publication is a
few round trips to Redis, and waiting for them one row at a time left the relay
idle most of the time. Per target, order is kept across relays too: a relay
leaves the rows of a target whose older rows another relay holds (it publishes
them in a later round, retried at once rather than at the next poll). A
relay killed between publishing and committing leaves its rows pending (its
locks go with its connection); the next round publishes them again with the same
message ids, which reach no socket twice (``docs/outbox.md``).

A publication that fails (the layer or Redis away) ends its target's part of the
round: the target's rows before it are marked sent, the failed one gets one more
``attempts`` and its error, the target's later rows stay as they were (other
targets go on), and the relay retries with backoff. No row is
ever dropped. On PostgreSQL the relay also ``LISTEN``\\s (psycopg 3), so a commit
wakes it at once; otherwise, and as a fallback, it looks every
``WS_RELAY_POLL_INTERVAL`` seconds. Sent rows older than ``WS_RELAY_RETENTION``
are deleted.

The database work runs in one thread of the relay's own (Django connections are
per thread), so a transaction held across an ``await`` never mixes with a view's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from ..config import WebSocketConfig
from ..manager import ConnectionManager
from .outbox import NOTIFY_CHANNEL

__all__ = ["OutboxRelay", "RelayStats", "start_in_process"]

logger = logging.getLogger("svc_infra.websocket.outbox")

T = TypeVar("T")

#: A row whose publication failed this many times counts as failing (it is kept
#: and retried; ``RelayStats.failing`` and the metric count it).
FAILING_AFTER = 3
#: Seconds between two cleanups of sent rows, and between two metric reads.
HOUSEKEEPING_EVERY = 30.0
#: Publications in flight at once in a round (each to a different target).
CONCURRENCY = 32
#: Seconds before the next round when this one left rows to another relay (it
#: holds an older row of their target, and is about to commit).
DEFERRED_RETRY = 0.02


@dataclass
class RelayStats:
    """What one relay did, and the table's state at its last look.

    Attributes:
        published: Rows published (each counted once per publication).
        retried: Publications that failed and will be retried.
        rounds: Transactions run.
        pending: Rows waiting, at the last look.
        oldest_pending_age: Seconds the oldest waiting row has waited, then.
        failing: Rows that failed at least ``FAILING_AFTER`` times, then.
        deleted: Sent rows deleted after the retention.
    """

    published: int = 0
    retried: int = 0
    rounds: int = 0
    pending: int = 0
    oldest_pending_age: float = 0.0
    failing: int = 0
    deleted: int = 0


@dataclass(frozen=True, slots=True)
class _Row:
    id: int
    message_id: str
    kind: str
    target: str
    exclude: str | None
    frame: str | bytes


class OutboxRelay:
    """Publishes committed outbox rows through ``manager``.

    Args:
        manager: Where to publish (default: this process's manager,
            ``get_process_manager()``).
        using: The database alias of the outbox table.
        config: ``relay_*`` settings (default: the manager's).
    """

    def __init__(
        self,
        manager: ConnectionManager | None = None,
        *,
        using: str = "default",
        config: WebSocketConfig | None = None,
    ) -> None:
        from . import get_process_manager

        self.manager = manager if manager is not None else get_process_manager()
        self.using = using
        config = config if config is not None else self.manager.config
        self.batch = config.relay_batch
        self.poll_interval = config.relay_poll_interval
        self.retention = config.relay_retention
        self.stats = RelayStats()
        #: True while a ``LISTEN`` connection is up (PostgreSQL).
        self.listening = False
        #: Synced after each round (:class:`~.outbox_metrics.RelayMetrics` sets it).
        self.metrics: Any = None
        self._wake = asyncio.Event()
        #: Rows the last claim locked but left for a later round (target order).
        self._deferred = 0
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="ws-outbox")

    # --- running -----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Publish rows until ``stop`` is set (then finish the round in hand).

        Never raises for a database or layer outage: it logs, backs off (0.1 s
        doubling to 30 s) and tries again. Cancelling is safe: rows of an
        unfinished round stay pending and are published again (once per socket).
        """
        stop = stop if stop is not None else asyncio.Event()
        listener = None
        if await self._db(self._vendor) == "postgresql":
            listener = asyncio.get_running_loop().create_task(self._listen(stop))
        failures = 0
        housekeeping = 0.0
        try:
            while not stop.is_set():
                # Cleared before the round, not after: a NOTIFY that comes
                # while it runs is for rows it may not have seen, and must wake
                # the next one at once, not a poll interval later.
                self._wake.clear()
                try:
                    sent = await self.relay_once()
                    if time.monotonic() - housekeeping > HOUSEKEEPING_EVERY:
                        housekeeping = time.monotonic()
                        await self.housekeeping()
                    failures = 0
                except Exception as exc:
                    failures += 1
                    delay = min(0.1 * 2 ** (failures - 1), 30.0)
                    logger.warning("outbox relay: %r; again in %.1fs", exc, delay)
                    await _wait_any(stop, None, delay)
                    continue
                if sent >= self.batch:
                    continue  # more are waiting
                if self._deferred:  # another relay is about to commit their elders
                    await _wait_any(stop, None, DEFERRED_RETRY)
                    continue
                await _wait_any(stop, self._wake, self.poll_interval)
        finally:
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener
            await self.close()

    async def close(self) -> None:
        """Close the relay's database connection and its thread (``run`` does, when
        it ends). Never raises."""
        from django.db import connections

        with contextlib.suppress(Exception):
            await self._db(connections.close_all)
        self._executor.shutdown(wait=False)

    async def relay_once(self) -> int:
        """One round: publish the oldest pending rows, mark them sent. Returns how
        many were published.

        Raises:
            Exception: The first publication error (``ChannelLayerError``) after
                the round is committed (each failed row counted), or the
                database's.

        Cancelling is safe: the rows published are marked sent, the others stay
        pending.
        """
        rows = await self._db(self._claim)
        self.stats.rounds += 1
        chains: dict[tuple[str, str], list[_Row]] = {}
        for row in rows:  # in id order, so each chain is too
            chains.setdefault((row.kind, row.target), []).append(row)
        sent: list[int] = []
        failed: list[tuple[int, str]] = []
        errors: list[BaseException] = []
        slots = asyncio.Semaphore(CONCURRENCY)

        async def publish(chain: list[_Row]) -> None:
            for row in chain:
                try:
                    async with slots:
                        await self.manager.ops.send_once(
                            row.kind, row.target or None, row.frame, row.message_id, row.exclude
                        )
                except Exception as exc:
                    # The target's later rows wait: its order holds.
                    failed.append((row.id, repr(exc)))
                    errors.append(exc)
                    self.stats.retried += 1
                    return
                sent.append(row.id)

        try:
            if len(chains) == 1:  # no task to start for the common case of one target
                await publish(rows)
            elif chains:
                # A TaskGroup, not gather: cancelled, it waits for every chain to
                # stop, so no publication ends after the rows are marked below.
                async with asyncio.TaskGroup() as group:
                    for chain in chains.values():
                        group.create_task(publish(chain))
        finally:
            # Cancelled or not, the rows published are marked (a crash here is
            # what the message ids are for).
            await asyncio.shield(self._db(lambda: self._finish(sent, failed)))
        self.stats.published += len(sent)
        if self.metrics is not None:
            self.metrics.sync()
        if errors:
            raise errors[0]
        return len(sent)

    async def housekeeping(self) -> None:
        """Delete sent rows past the retention; read the table's metrics."""
        await self._db(self._cleanup)
        await self._db(self._measure)
        if self.metrics is not None:
            self.metrics.sync()

    # --- the database side (in the relay's thread) -------------------------------------

    async def _db(self, func: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, func)

    def _vendor(self) -> str:
        from django.db import connections

        return str(connections[self.using].vendor)

    def _claim(self) -> list[_Row]:
        from django.db import connections

        from .models import OutboxMessage

        connection = connections[self.using]
        _close_if_broken(connection)
        self._deferred = 0
        connection.set_autocommit(False)  # the round's transaction, ended by _finish
        try:
            pending = OutboxMessage.objects.using(self.using).filter(sent__isnull=True)
            query = pending.order_by("id")
            skip_locked = connection.features.has_select_for_update_skip_locked
            if skip_locked:
                query = query.select_for_update(skip_locked=True)
            # Tuples, not model instances: a third of a round's CPU went to those.
            fields = ("id", "message_id", "kind", "target", "exclude", "text", "data")
            rows = [
                _Row(
                    id_,
                    str(mid),
                    kind,
                    target,
                    exclude,
                    text if text is not None else bytes(data or b""),
                )
                for id_, mid, kind, target, exclude, text, data in query.values_list(*fields)[
                    : self.batch
                ]
            ]
            if skip_locked and rows:
                rows = self._in_target_order(pending, rows)
        except BaseException:
            # Either may fail on a broken connection: the next round closes it.
            with contextlib.suppress(Exception):
                connection.rollback()
            with contextlib.suppress(Exception):
                connection.set_autocommit(True)
            raise
        return rows

    def _in_target_order(self, pending: Any, rows: list[_Row]) -> list[_Row]:
        """Drop the rows of a target that come after a pending row of it that
        another relay holds (it publishes that one first; these wait a round).

        The older pending rows this claim did not get are the ones other relays
        hold (``SKIP LOCKED`` took the oldest free ones): at most their batches.
        One plain range query finds them; matching targets is done here, as a
        query with one condition per target cost more to build than to run."""
        held = {r.id for r in rows}
        cutoff: dict[tuple[str, str], int] = {}
        older = pending.filter(id__lt=rows[-1].id).order_by("id")
        for id_, kind, target in older.values_list("id", "kind", "target"):
            if id_ not in held:
                cutoff.setdefault((kind, target), id_)  # ordered: the first is the oldest
        if not cutoff:
            return rows
        kept = [r for r in rows if r.id < cutoff.get((r.kind, r.target), r.id + 1)]
        self._deferred = len(rows) - len(kept)
        return kept

    def _finish(self, sent: list[int], failed: list[tuple[int, str]]) -> None:
        from django.db import connections
        from django.db.models import F
        from django.utils import timezone

        from .models import OutboxMessage

        connection = connections[self.using]
        try:
            table = OutboxMessage.objects.using(self.using)
            if sent:
                table.filter(id__in=sent).update(sent=timezone.now())
            for row_id, error in failed:
                table.filter(id=row_id).update(attempts=F("attempts") + 1, last_error=error)
            connection.commit()
        except BaseException:
            with contextlib.suppress(Exception):  # broken: the next round closes it
                connection.rollback()
            raise
        finally:
            connection.set_autocommit(True)

    def _cleanup(self) -> None:
        from django.utils import timezone

        from .models import OutboxMessage

        horizon = timezone.now() - timedelta(seconds=self.retention)
        table = OutboxMessage.objects.using(self.using)
        old = table.filter(sent__lt=horizon).order_by("id").values_list("id", flat=True)
        while ids := list(old[:1000]):  # in slices: no long lock on a large table
            self.stats.deleted += table.filter(id__in=ids).delete()[0]

    def _measure(self) -> None:
        from django.db.models import Count, Min, Q
        from django.utils import timezone

        from .models import OutboxMessage

        pending = OutboxMessage.objects.using(self.using).filter(sent__isnull=True)
        found = pending.aggregate(
            n=Count("id"),
            oldest=Min("created"),
            failing=Count("id", filter=Q(attempts__gte=FAILING_AFTER)),
        )
        self.stats.pending = int(found["n"])
        self.stats.failing = int(found["failing"])
        oldest = found["oldest"]
        self.stats.oldest_pending_age = (
            0.0 if oldest is None else max((timezone.now() - oldest).total_seconds(), 0.0)
        )

    # --- PostgreSQL LISTEN -------------------------------------------------------------

    async def _listen(self, stop: asyncio.Event) -> None:
        """Wake the relay on each ``NOTIFY`` (a commit of outbox rows); reconnect
        with backoff. Polling goes on meanwhile, so a lost notification costs at
        most ``WS_RELAY_POLL_INTERVAL``."""
        try:
            import psycopg
        except ImportError:
            logger.info("psycopg 3 is not installed: the outbox relay polls")
            return
        from django.db import connections

        settings = connections[self.using].settings_dict
        params = {
            "dbname": settings.get("NAME") or None,
            "user": settings.get("USER") or None,
            "password": settings.get("PASSWORD") or None,
            "host": settings.get("HOST") or None,
            "port": settings.get("PORT") or None,
        }
        failures = 0
        while not stop.is_set():
            try:
                conn = await psycopg.AsyncConnection.connect(
                    autocommit=True, **{k: v for k, v in params.items() if v is not None}
                )
                async with conn:
                    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self.listening, failures = True, 0
                    self._wake.set()  # rows committed while we were not listening
                    async for _ in conn.notifies():
                        self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                logger.warning("outbox relay: LISTEN failed (%r); polling meanwhile", exc)
            finally:
                self.listening = False
            await _wait_any(stop, None, min(0.1 * 2**failures, 30.0))


def _close_if_broken(connection: Any) -> None:
    """Close this thread's connection if it broke (a database restart), so that the
    next query reconnects.

    Not ``close_if_unusable_or_obsolete()``, which Django calls per request: it
    also closes a connection older than ``CONN_MAX_AGE``, and under the default
    (0) the relay would open a new connection every round (a third of a quiet
    round's time, measured). The relay's connection lives as long as the relay."""
    if connection.connection is None:
        return
    if connection.errors_occurred or not connection.get_autocommit():
        # A round that failed half-way, or a query error: keep it only if it
        # still answers and is not left inside a transaction.
        if connection.get_autocommit() and connection.is_usable():
            connection.errors_occurred = False
        else:
            connection.close()


async def _wait_any(stop: asyncio.Event, wake: asyncio.Event | None, delay: float) -> None:
    """Wait until ``stop`` or ``wake`` is set, or ``delay`` seconds pass."""
    waiters = [asyncio.ensure_future(stop.wait())]
    if wake is not None:
        waiters.append(asyncio.ensure_future(wake.wait()))
    try:
        await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


_in_process: dict[int, asyncio.Task[None]] = {}


def start_in_process(manager: ConnectionManager) -> None:
    """With ``WS_RELAY_IN_PROCESS``, start this process's relay on ``manager`` (once;
    it stops with the event loop). The Django consumers call it on connect."""
    if not manager.config.relay_in_process:
        return
    task = _in_process.get(id(manager))
    if task is not None and not task.done():
        return
    relay = OutboxRelay(manager)
    with contextlib.suppress(ImportError):  # the metrics extra: in the process's /metrics
        from .outbox_metrics import RelayMetrics

        RelayMetrics(relay)
    _in_process[id(manager)] = asyncio.get_running_loop().create_task(
        relay.run(), name="ws-outbox-relay"
    )
