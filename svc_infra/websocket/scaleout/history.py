"""History on Redis: a Redis Stream per stream, shared by every process of the cluster.

Keys (``<prefix>`` is the layer's prefix and the manager's, as for presence):

- ``<prefix>hm:<stream>``: a hash ``{e: epoch, o: top offset, r: the server's
  replication id}``, kept
  ``history_meta_ttl`` (or the stream's ``ttl``, if longer) after the last message;
- ``<prefix>hi:<stream>``: a sorted set of message ids (outbox messages, which a
  relay may publish twice) scored by their offset, the last ``size`` + 1000;
- ``<prefix>h:<stream>``: a Redis Stream of the messages, entry id ``<offset>-1``,
  fields ``d`` (the frame), ``b`` ("1" for binary), ``x`` (the excluded user, or
  empty), ``t`` (Redis time in ms); trimmed to the stream's size (exact MAXLEN)
  and expiring ``history_ttl`` after the last message.

On a Redis Cluster the stream's name is a hash tag (``<prefix>hm:{<stream>}``,
``<prefix>h:{<stream>}``): both keys of a stream share a slot, as the scripts
need, and the streams spread over the Cluster's slots.

One script per published message assigns the offset and appends (one round trip);
one script per replay reads the position and the entries after it atomically.
The epoch is made from Redis' clock when the hash does not exist: after a flush,
a restart without persistence or an expiry, the epoch changes, so a client's old
position is reported as not recovered instead of matching new offsets.

A failover is subtler: replication is asynchronous, so the promoted replica may
lack the last messages a client already received, and would hand their offsets
to new messages in the same epoch: a client would skip those (a silent gap). So
the hash also records the server's replication id (``r``: ``master_replid`` from
``INFO replication``), which changes when a replica is promoted (or a server
restarts); both scripts start a new epoch when the stream's ``r`` is not the
server's own. A client then hears ``recovered: false`` for that stream, never a
gap. The price: after any promotion or restart, even one that lost nothing, the
streams it holds start new epochs as they are next used.
"""

from __future__ import annotations

import logging
from typing import Any

from ..layer_messages import Frame
from ..server._history import META_TTL, Entry, Replay, replay_of
from .layers import close_client, redis_text

__all__ = ["RedisHistory"]

logger = logging.getLogger("svc_infra.websocket.history")

# The start of both scripts: the stream's epoch, a new one when the hash is
# missing or was written by another server (a promoted replica: see the docstring).
_EPOCH = """
local replid = string.match(redis.call('INFO', 'replication'), 'master_replid:(%w+)') or ''
local meta = redis.call('HMGET', KEYS[1], 'e', 'o', 'r')
local epoch, top = meta[1], tonumber(meta[2])
if not epoch or (meta[3] and meta[3] ~= replid) then
  local now = redis.call('TIME')
  epoch = now[1] .. string.format('%06d', tonumber(now[2]))
  top = 0
  redis.call('DEL', KEYS[2], KEYS[3])
  redis.call('HSET', KEYS[1], 'e', epoch, 'o', 0, 'r', replid)
elseif not meta[3] then
  redis.call('HSET', KEYS[1], 'r', replid)  -- written by an older version
end
"""

# KEYS: meta, stream, ids. ARGV: frame, binary flag, exclude, size, ttl ms, meta ttl
# ms, message id ('' for none). Returns {offset, epoch, 1}, or {offset it got then,
# epoch, 0} for a message id recorded before.
_APPEND = (
    _EPOCH
    + """
local mid = ARGV[7]
if mid ~= '' then
  local known = redis.call('ZSCORE', KEYS[3], mid)
  if known then return {tonumber(known), epoch, 0} end
end
local offset = redis.call('HINCRBY', KEYS[1], 'o', 1)
if mid ~= '' then
  -- The ids of the stream's last size + 1000 messages: a retry finds its offset.
  redis.call('ZADD', KEYS[3], offset, mid)
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. (offset - tonumber(ARGV[4]) - 1000))
  redis.call('PEXPIRE', KEYS[3], ARGV[6])
end
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[4], offset .. '-1',
           'd', ARGV[1], 'b', ARGV[2], 'x', ARGV[3], 't', ms)
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
return {offset, epoch, 1}
"""
)

# KEYS: meta, stream. ARGV: from offset (-1: position only), ttl ms, meta ttl ms.
# Returns {epoch, top, entries newer than ttl after the offset}.
_SINCE = (
    _EPOCH
    + """
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local from = tonumber(ARGV[1])
if from < 0 or from >= top then
  return {epoch, top, {}}
end
local now = redis.call('TIME')
local horizon = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[2])
local entries = redis.call('XRANGE', KEYS[2], (from + 1) .. '-1', '+')
local fresh = {}
for _, entry in ipairs(entries) do
  local fields = entry[2]
  local t = 0
  for i = 1, #fields, 2 do
    if fields[i] == 't' then t = tonumber(fields[i + 1]) end
  end
  if t >= horizon then table.insert(fresh, entry) end
end
return {epoch, top, fresh}
"""
)


class RedisHistory:
    """History shared by every process, on the layer's Redis.

    Args:
        client: A ``redis.asyncio.Redis`` or ``RedisCluster`` (owned: closed by
            :meth:`close`).
        key_prefix: Prefix of every key.
        meta_ttl: ``history_meta_ttl``.
        hash_tags: Put the stream's name in a hash tag (for a Redis Cluster).
    """

    def __init__(
        self,
        client: Any,
        *,
        key_prefix: str,
        meta_ttl: float = META_TTL,
        hash_tags: bool = False,
    ) -> None:
        self.client = client
        self.key_prefix = key_prefix
        self.meta_ttl = meta_ttl
        self._tag = "{%s}" if hash_tags else "%s"
        self._append = client.register_script(_APPEND)
        self._since = client.register_script(_SINCE)

    def _keys(self, stream: str) -> list[str]:
        tagged = self._tag % stream
        prefix = self.key_prefix
        return [f"{prefix}hm:{tagged}", f"{prefix}h:{tagged}", f"{prefix}hi:{tagged}"]

    async def append(
        self,
        stream: str,
        frame: Frame,
        exclude: str | None,
        size: int,
        ttl: float,
        message_id: str | None = None,
    ) -> tuple[int, str, bool]:
        """Record ``frame`` on ``stream``; return (offset, epoch, True), or for a
        ``message_id`` recorded before, (the offset it got then, epoch, False).

        Raises:
            Exception: Whatever redis-py raises when Redis cannot be reached.
        """
        binary = isinstance(frame, bytes)
        args = [frame, "1" if binary else "0", exclude or "", size, _ms(ttl), self._meta_ms(ttl)]
        args.append(message_id or "")
        offset, epoch, fresh = await self._append(keys=self._keys(stream), args=args)
        return int(offset), redis_text(epoch), bool(int(fresh))

    async def since(
        self, stream: str, position: tuple[str, int] | None, size: int, ttl: float
    ) -> Replay:
        """What ``stream`` holds after ``position`` (epoch, offset).

        Raises:
            Exception: Whatever redis-py raises when Redis cannot be reached.
        """
        start = -1 if position is None else position[1]
        epoch, top, raw = await self._since(
            keys=self._keys(stream), args=[start, _ms(ttl), self._meta_ms(ttl)]
        )
        entries = []
        for entry_id, fields in raw:
            data = dict(zip(fields[::2], fields[1::2], strict=True))
            frame: Frame = data[b"d"] if data.get(b"b") == b"1" else redis_text(data[b"d"])
            exclude = redis_text(data.get(b"x", b"")) or None
            entries.append(Entry(int(redis_text(entry_id).split("-")[0]), frame, exclude))
        return replay_of(redis_text(epoch), int(top), entries, position)

    def _meta_ms(self, ttl: float) -> int:
        return _ms(max(self.meta_ttl, ttl))

    async def close(self) -> None:
        """Close the client and its pool."""
        await close_client(self.client)


def _ms(seconds: float) -> int:
    return max(int(seconds * 1000), 1)
