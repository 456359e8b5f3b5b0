"""The Lua scripts of the index presence mode (:mod:`.indexed`).

Every script touches the keys of one hash slot only, so the same scripts run on
one Redis, on a Sentinel-managed primary and on a Redis Cluster. Users and rooms
are spread over :data:`BUCKETS` buckets (CRC32 of the name); a bucket's keys
share the hash tag ``{x<bucket>}``, so they live in one slot and a script can
change a user's connections, the bucket's counters and its sets at once. Keys
under the prefix ``K`` (``T`` is a bucket's tag):

- ``K T u:<user>``      hash: ``<process> <connection id>`` -> the connection's
  ``[connected_at ms, metadata]`` (``IndexedPresence.encode``): the user's
  connections in every process
- ``K T users``         set: the bucket's users with at least one connection
- ``K T nc``            the bucket's connection count
- ``K T r:<user>``      set: the user's rooms; ``K T rv`` hash: user -> version of
  the set (Redis time in microseconds); ``K T rt:<user>``: the version at which
  the set was emptied (ten minutes)
- ``K T m:<room>``      set: the room's users (the room's own bucket)
- ``K T rooms``         set: the bucket's rooms with at least one user
- ``K T cap:<user>``, ``K T capt:<user>``: the user's connection slots, as in
  the mirror mode (:mod:`._scripts`), with the dead processes given by the caller
- ``K {p:<id>}live``    a process's liveness key; ``K {p:<id>}c`` hash:
  connection id -> user, the process's connections (for whoever reaps it)
- ``K {g}procs``        hash: process id -> its channel ('' when the layer keeps no
  groups in Redis); ``K {g}boot``: made when the keys were first written

The scripts take the prefix as ``ARGV[1]`` and the bucket's tag as ``ARGV[2]``;
``KEYS[1]`` is a key of that slot, which routes the call on a Cluster.
"""

from __future__ import annotations

import zlib

__all__ = [
    "BUCKETS",
    "CLAIM",
    "CLAIM_NEWEST",
    "RELEASE",
    "ROOM_OPS",
    "ROOM_VERSIONS",
    "USER_OPS",
    "USER_ROOMS",
    "bucket_tag",
    "tag_of",
]

#: Buckets users and rooms are spread over: enough slots for an even spread over
#: the masters of a Cluster, few enough that reading every bucket's counters is
#: one short pipeline.
BUCKETS = 128


def bucket_tag(name: str) -> str:
    """The hash tag of the bucket that holds ``name`` (a user or a room)."""
    return tag_of(zlib.crc32(name.encode("utf-8", "surrogatepass")) % BUCKETS)


def tag_of(bucket: int) -> str:
    """The hash tag of bucket number ``bucket``."""
    return f"{{x{bucket}}}"


_COMMON = """
local K, T = ARGV[1], ARGV[2]
local B = K .. T
local function str(v) return string.format('%.0f', v) end
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
-- A new version for the user's room set: Redis time, past the last one.
local function bump(uid)
  local v = now()
  local old = tonumber(redis.call('HGET', B .. 'rv', uid) or '0')
  local tomb = tonumber(redis.call('GET', B .. 'rt:' .. uid) or '0')
  if old < tomb then old = tomb end
  if v <= old then v = old + 1 end
  return v
end
local function store_rooms(uid)
  local v = bump(uid)
  if redis.call('SCARD', B .. 'r:' .. uid) == 0 then
    redis.call('HDEL', B .. 'rv', uid)
    redis.call('SET', B .. 'rt:' .. uid, str(v), 'EX', 600)
  else
    redis.call('HSET', B .. 'rv', uid, str(v))
  end
  return v
end
local function version(uid)
  return redis.call('HGET', B .. 'rv', uid) or redis.call('GET', B .. 'rt:' .. uid) or '0'
end
"""

#: ARGV: K, T, process id, then (op, connection id, user, json) quads, all users of
#: bucket T: '+' (opened), '-' (closed), '?' (the user's last connection in that
#: process closed: if none is left anywhere, the user leaves their rooms).
#: Returns {user, version, n, room1..roomn, ...} for each user who left everywhere
#: (the caller removes them from those rooms' member sets).
USER_OPS = (
    _COMMON
    + """
local proc = ARGV[3]
local gone = {}
for i = 4, #ARGV, 4 do
  local op, conn, uid = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local key = B .. 'u:' .. uid
  if op == '+' then
    if redis.call('HSET', key, proc .. ' ' .. conn, ARGV[i + 3]) == 1 then
      redis.call('INCR', B .. 'nc')
      redis.call('SADD', B .. 'users', uid)
    end
  elseif op == '-' then
    if redis.call('HDEL', key, proc .. ' ' .. conn) == 1 then
      redis.call('DECR', B .. 'nc')
      if redis.call('EXISTS', key) == 0 then redis.call('SREM', B .. 'users', uid) end
    end
  elseif op == '?' then
    local rooms = B .. 'r:' .. uid
    if redis.call('EXISTS', key) == 0 and redis.call('EXISTS', rooms) == 1 then
      local members = redis.call('SMEMBERS', rooms)
      redis.call('DEL', rooms)
      table.insert(gone, uid)
      table.insert(gone, str(store_rooms(uid)))
      table.insert(gone, #members)
      for _, room in ipairs(members) do table.insert(gone, room) end
    end
  end
end
return gone
"""
)

#: ARGV: K, T, user, 'join' | 'leave' | 'get' | 'restore', then the room (join,
#: leave) or a version and the rooms (restore: written only if newer than Redis').
#: Returns {version, changed (0/1), rooms...}.
USER_ROOMS = (
    _COMMON
    + """
local uid, op = ARGV[3], ARGV[4]
local key = B .. 'r:' .. uid
local changed = 0
if op == 'join' then
  changed = redis.call('SADD', key, ARGV[5])
elseif op == 'leave' then
  changed = redis.call('SREM', key, ARGV[5])
elseif op == 'restore' then
  if tonumber(ARGV[5]) > tonumber(version(uid)) and #ARGV > 5 then
    redis.call('DEL', key)
    for i = 6, #ARGV do redis.call('SADD', key, ARGV[i]) end
    redis.call('HSET', B .. 'rv', uid, ARGV[5])
    changed = 1
  end
  local out = {version(uid), changed}
  for _, room in ipairs(redis.call('SMEMBERS', key)) do table.insert(out, room) end
  return out
end
local v = version(uid)
if changed == 1 then v = str(store_rooms(uid)) end
local out = {v, changed}
for _, room in ipairs(redis.call('SMEMBERS', key)) do table.insert(out, room) end
return out
"""
)

#: ARGV: K, T, then users of bucket T. Returns the version of each one's room set
#: (0 if it has none and no recent tombstone): a process compares them with its own.
ROOM_VERSIONS = (
    _COMMON
    + """
local out = {}
for i = 3, #ARGV do table.insert(out, version(ARGV[i])) end
return out
"""
)

#: ARGV: K, T, then (op, room, user) triples for rooms of bucket T: 'j' adds the
#: user to the room's members, 'l' removes them. Returns 1.
ROOM_OPS = (
    _COMMON
    + """
for i = 3, #ARGV, 3 do
  local op, room, uid = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local key = B .. 'm:' .. room
  if op == 'j' then
    redis.call('SADD', key, uid)
    redis.call('SADD', B .. 'rooms', room)
  elseif redis.call('SREM', key, uid) == 1 and redis.call('EXISTS', key) == 0 then
    redis.call('SREM', B .. 'rooms', room)
  end
end
return 1
"""
)

_CAP_COMMON = """
local key, order = B .. 'cap:' .. ARGV[4], B .. 'capt:' .. ARGV[4]
-- ARGV[7..]: the dead processes, as the caller last saw them (a process that
-- started since counts as alive).
local dead = {}
for i = 7, #ARGV do dead[ARGV[i]] = true end
local f = redis.call('HGETALL', key)
local n = 0
for i = 1, #f, 2 do
  if not dead[f[i + 1]] then n = n + 1
  else redis.call('HDEL', key, f[i]); redis.call('ZREM', order, f[i]) end
end
"""

#: ARGV: K, T, process id, user, connection id, cap, dead process ids... Claim one
#: of the user's ``cap`` slots: 1, or 0 when the other processes' connections fill them.
CLAIM = (
    _COMMON
    + _CAP_COMMON
    + """
if n >= tonumber(ARGV[6]) then return 0 end
redis.call('HSET', key, ARGV[5], ARGV[3])
redis.call('ZADD', order, str(now()), ARGV[5])
return 1
"""
)

#: As :data:`CLAIM`, but the slot is taken whatever happens: while the user's slots
#: are full the oldest is freed. Returns {{connection id, process id}...} of those.
CLAIM_NEWEST = (
    _COMMON
    + _CAP_COMMON
    + """
local evicted = {}
while n >= tonumber(ARGV[6]) and n > 0 do
  local oldest = redis.call('ZRANGE', order, 0, 0)[1]
  if not oldest then oldest = redis.call('HKEYS', key)[1] end
  table.insert(evicted, {oldest, redis.call('HGET', key, oldest)})
  redis.call('HDEL', key, oldest)
  redis.call('ZREM', order, oldest)
  n = n - 1
end
redis.call('HSET', key, ARGV[5], ARGV[3])
redis.call('ZADD', order, str(now()), ARGV[5])
return evicted
"""
)

#: ARGV: K, T, user, connection id. Free a claimed slot.
RELEASE = """
local B = ARGV[1] .. ARGV[2]
redis.call('HDEL', B .. 'cap:' .. ARGV[3], ARGV[4])
redis.call('ZREM', B .. 'capt:' .. ARGV[3], ARGV[4])
return 1
"""
