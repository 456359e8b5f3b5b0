"""The Lua scripts behind :class:`~svc_infra.websocket.scaleout.presence.RedisPresence`.

Every script takes the key prefix as ``ARGV[1]`` and runs atomically, so two
processes never see half of a change. Keys under the prefix ``K``:

- ``K instances``     set of the ids of processes that registered
- ``K i:<id>``        a process's liveness key; its expiry is the heartbeat bound
- ``K c:<id>``        hash: connection id -> user id, for the process's connections
- ``K m:<id>``        hash: connection id -> JSON of the connection's ``ConnectionInfo``
- ``K u:<user>``      hash: process id -> number of the user's connections there
- ``K r:<user>``      set: the user's rooms
- ``K rv``            hash: user -> version of the user's room set
- ``K t:<user>``      tombstone: version at which the user's rooms were emptied
  (ten minutes, as long as the change index reaches)
- ``K boot``          an id made when these keys were first written: a process that
  finds the one it knew has nothing to restore (Redis kept its data)
- ``K cap:<user>``    hash: connection id -> process id, the user's claimed slots
  under ``WS_MAX_CONNECTIONS_PER_USER``
- ``K capt:<user>``   sorted set: connection id -> when it claimed its slot, under
  ``WS_CAP_POLICY=newest`` (which slot is the oldest)
- ``K ver``           hash: process id -> version of its connections (bumped by every
  write of that process; its announcements carry it)
- ``K rchg``          sorted set: user -> version of the user's last room change
  (trimmed after ten minutes): who changed since a given time, without a full read
- ``K ch``            hash: process id -> its manager's channel, when the layer keeps
  groups in Redis: a dead process's channel is removed from its groups
- ``K beat``          Redis time of the last refresh by any process; a gap longer
  than 3/4 of a key life means Redis itself stopped, and ``K hold`` (one key
  life) makes every registered process count as alive meanwhile
- ``K dead``          sorted set: reaped process id -> when; one ``presence_ttl``
  later (``RedisPresence.evict_after``), unless it came back, the next heartbeat
  removes its channel from the groups listed in ``K dg:<id>`` (``u<user>`` and
  ``r<room>`` members)

The scripts never decode JSON: Redis' decoder refuses what Python's encoder
writes for some strings (lone surrogates), and one such value must not break
reaping for the whole cluster. Versions are Redis ``TIME`` in microseconds,
bumped past the stored value, so they keep growing across a Redis restart that
loses every key.

The scripts touch keys they do not receive in ``KEYS``: fine on one Redis (or a
Sentinel-managed primary), which is what channels_redis supports; Redis Cluster
is not supported by channels_redis either.
"""

from __future__ import annotations

__all__ = [
    *("BEAT", "CLAIM", "CLAIM_NEWEST", "DIGEST", "LEAVE", "LIVE", "LOAD", "LOAD_ONE"),
    *("RELEASE", "RESET", "RESTORE", "ROOMS", "SYNC"),
]

_COMMON = """
local K = ARGV[1]
-- While K hold exists (Redis itself stopped: see touch), every registered process
-- counts as alive: nobody is reaped, and no mirror drops anyone.
local held = redis.call('EXISTS', K .. 'hold') == 1
local function alive(inst) return held or redis.call('EXISTS', K .. 'i:' .. inst) == 1 end
-- Whether a live process holds a connection of uid.
local function present(uid)
  local f = redis.call('HGETALL', K .. 'u:' .. uid)
  for i = 1, #f, 2 do
    if tonumber(f[i + 1]) > 0 and alive(f[i]) then return true end
  end
  return false
end
-- Versions pass through as '%.0f' strings: Lua's own number format would cut digits.
local function str(v) return string.format('%.0f', v) end
-- Redis time in microseconds.
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
-- Record that a process touched Redis (ttl: its key life, ms). A Redis that stopped
-- itself (paused, hung, its host frozen) lets liveness keys lapse while nobody
-- could refresh them: then no process touched it for longer than 3/4 of a key
-- life (each refreshes every half key life). Reap nobody for one key life, so
-- that the live processes write themselves back before their users' rooms empty.
local function touch(ttl)
  local t = now()
  local last = tonumber(redis.call('GET', K .. 'beat') or '0')
  redis.call('SET', K .. 'beat', str(t), 'PX', 86400000)
  if last > 0 and t - last > 750 * ttl then
    redis.call('SET', K .. 'hold', '1', 'PX', ttl)
    held = true
  end
end
local function bump(uid)
  local v = now()
  local old = tonumber(redis.call('HGET', K .. 'rv', uid) or '0')
  local tomb = tonumber(redis.call('GET', K .. 't:' .. uid) or '0')
  if old < tomb then old = tomb end
  if v <= old then v = old + 1 end
  return v
end
-- Store the user's room set at a new version; return the version.
local function store_rooms(uid)
  local v = bump(uid)
  if redis.call('SCARD', K .. 'r:' .. uid) == 0 then
    redis.call('HDEL', K .. 'rv', uid)
    redis.call('SET', K .. 't:' .. uid, str(v), 'EX', 600)
  else
    redis.call('HSET', K .. 'rv', uid, str(v))
  end
  redis.call('ZADD', K .. 'rchg', str(v), uid)
  return v
end
-- The user left everywhere: empty their rooms. Appends {uid, version} to gone.
local function user_gone(uid, gone)
  if redis.call('EXISTS', K .. 'r:' .. uid) == 1 and not present(uid) then
    redis.call('DEL', K .. 'r:' .. uid)
    table.insert(gone, uid)
    table.insert(gone, store_rooms(uid))
  end
end
local function drop_instance(inst, gone, later)
  local users = {}
  for _, uid in ipairs(redis.call('HVALS', K .. 'c:' .. inst)) do users[uid] = true end
  redis.call('DEL', K .. 'c:' .. inst, K .. 'm:' .. inst, K .. 'i:' .. inst)
  redis.call('SREM', K .. 'instances', inst)
  redis.call('HDEL', K .. 'ver', inst)
  -- A dead process's channel stays in its groups until the layer's group_expiry
  -- (a day), and every message to them is still written to it. Note which groups
  -- (its users', and their rooms'): a later beat removes the channel from them,
  -- unless the process came back meanwhile (it was only hung).
  local pending = later and redis.call('HEXISTS', K .. 'ch', inst) == 1
  if pending then
    redis.call('ZADD', K .. 'dead', str(now()), inst)
  else
    redis.call('HDEL', K .. 'ch', inst)
  end
  for uid, _ in pairs(users) do
    if pending then
      redis.call('SADD', K .. 'dg:' .. inst, 'u' .. uid)
      for _, room in ipairs(redis.call('SMEMBERS', K .. 'r:' .. uid)) do
        redis.call('SADD', K .. 'dg:' .. inst, 'r' .. room)
      end
    end
    redis.call('HDEL', K .. 'u:' .. uid, inst)
    user_gone(uid, gone)
  end
end
-- Processes reaped before ``horizon`` and not back: {channel, {users}, {rooms}} each,
-- forgotten here (the caller removes the channel from those groups).
local function due_evictions(horizon)
  local due = {}
  for _, inst in ipairs(redis.call('ZRANGEBYSCORE', K .. 'dead', '-inf', str(horizon))) do
    local channel = redis.call('HGET', K .. 'ch', inst)
    local users, rooms = {}, {}
    for _, m in ipairs(redis.call('SMEMBERS', K .. 'dg:' .. inst)) do
      if string.sub(m, 1, 1) == 'u' then table.insert(users, string.sub(m, 2))
      else table.insert(rooms, string.sub(m, 2)) end
    end
    redis.call('DEL', K .. 'dg:' .. inst)
    redis.call('ZREM', K .. 'dead', inst)
    redis.call('HDEL', K .. 'ch', inst)
    if channel then table.insert(due, {channel, users, rooms}) end
  end
  return due
end
"""

#: ARGV: K, id, ttl_ms. Refresh our liveness key only: 1, or 0 when it was gone.
LIVE = (
    _COMMON
    + """
touch(tonumber(ARGV[3]))
return redis.call('SET', K .. 'i:' .. ARGV[2], '1', 'PX', tonumber(ARGV[3]), 'XX') and 1 or 0
"""
)

#: ARGV: K, id, ttl_ms, evict_us. Refresh our liveness key, reap dead processes.
#: Returns {1, live ids, gone, evict} or {0} when our key was missing (resync
#: needed); evict: {channel, {users}, {rooms}} of each process reaped more than
#: evict_us microseconds ago that did not come back.
BEAT = (
    _COMMON
    + """
local id, ttl = ARGV[2], tonumber(ARGV[3])
touch(ttl)
if not redis.call('SET', K .. 'i:' .. id, '1', 'PX', ttl, 'XX') then return {0} end
local live, gone, dead = {}, {}, {}
for _, inst in ipairs(redis.call('SMEMBERS', K .. 'instances')) do
  if alive(inst) then table.insert(live, inst) else drop_instance(inst, gone, true) end
end
return {1, live, gone, due_evictions(now() - tonumber(ARGV[4]))}
"""
)

#: ARGV: K, id, ttl_ms, then (op, conn id, user, json) quads; op is
#: '+' (opened), '-' (closed) or '?' (the user's last connection here closed).
#: Returns {1, gone, version} or {0} when our key was missing (resync needed).
SYNC = (
    _COMMON
    + """
local id, ttl = ARGV[2], tonumber(ARGV[3])
if not redis.call('SET', K .. 'i:' .. id, '1', 'PX', ttl, 'XX') then return {0} end
local gone = {}
for i = 4, #ARGV, 4 do
  local op, conn, uid = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if op == '+' then
    redis.call('HSET', K .. 'm:' .. id, conn, ARGV[i + 3])
    if redis.call('HSET', K .. 'c:' .. id, conn, uid) == 1 then
      redis.call('HINCRBY', K .. 'u:' .. uid, id, 1)
    end
  elseif op == '-' then
    redis.call('HDEL', K .. 'm:' .. id, conn)
    if redis.call('HDEL', K .. 'c:' .. id, conn) == 1 then
      if redis.call('HINCRBY', K .. 'u:' .. uid, id, -1) <= 0 then
        redis.call('HDEL', K .. 'u:' .. uid, id)
      end
    end
  elseif op == '?' then
    user_gone(uid, gone)
  end
end
return {1, gone, redis.call('HINCRBY', K .. 'ver', id, 1)}
"""
)

#: ARGV: K, id, ttl_ms, channel ('' when the layer keeps no groups in Redis), then
#: (conn id, user, json) triples: replace what Redis holds for this process with
#: its live connections. Returns {new version, boot id, 1 if this process was
#: still registered (not reaped, Redis kept its data) else 0}.
RESET = (
    _COMMON
    + """
local id, ttl = ARGV[2], tonumber(ARGV[3])
for _, uid in ipairs(redis.call('HVALS', K .. 'c:' .. id)) do
  redis.call('HDEL', K .. 'u:' .. uid, id)
end
redis.call('DEL', K .. 'c:' .. id, K .. 'm:' .. id)
redis.call('SET', K .. 'i:' .. id, '1', 'PX', ttl)
local known = redis.call('SADD', K .. 'instances', id) == 0
if ARGV[4] ~= '' then redis.call('HSET', K .. 'ch', id, ARGV[4])
else redis.call('HDEL', K .. 'ch', id) end
-- Back after being reaped (hung, not dead): its channel stays in its groups.
redis.call('ZREM', K .. 'dead', id)
redis.call('DEL', K .. 'dg:' .. id)
for i = 5, #ARGV, 3 do
  redis.call('HSET', K .. 'c:' .. id, ARGV[i], ARGV[i + 1])
  redis.call('HSET', K .. 'm:' .. id, ARGV[i], ARGV[i + 2])
  redis.call('HINCRBY', K .. 'u:' .. ARGV[i + 1], id, 1)
end
redis.call('SET', K .. 'boot', str(now()), 'NX')
return {redis.call('HINCRBY', K .. 'ver', id, 1), redis.call('GET', K .. 'boot'), known and 1 or 0}
"""
)

#: ARGV: K, id, then users whose last local connection closed but whose check
#: had not run yet. A process leaving cleanly. Returns {gone, evict} (evict: as
#: for :data:`BEAT`, every pending one when this was the last process).
LEAVE = (
    _COMMON
    + """
local gone = {}
drop_instance(ARGV[2], gone, false)
for i = 3, #ARGV do user_gone(ARGV[i], gone) end
-- The last process out leaves no key that lives for ever, and removes the
-- channels of dead processes that no one is left to wait for.
local evict = {}
if redis.call('SCARD', K .. 'instances') == 0 then
  redis.call('DEL', K .. 'boot', K .. 'beat', K .. 'hold')
  evict = due_evictions(now())
end
return {gone, evict}
"""
)

#: ARGV: K, user, 'join' | 'leave', room. Returns {version, rooms}.
ROOMS = (
    _COMMON
    + """
local uid, key = ARGV[2], K .. 'r:' .. ARGV[2]
if ARGV[3] == 'join' then redis.call('SADD', key, ARGV[4])
else redis.call('SREM', key, ARGV[4]) end
local v = store_rooms(uid)
return {v, redis.call('SMEMBERS', key)}
"""
)

#: ARGV: K, then per user: user, version, n, then n rooms. Writes back room sets
#: this process knows at a newer version than Redis (after Redis lost its data).
RESTORE = (
    _COMMON
    + """
local i = 2
while i <= #ARGV do
  local uid, v, n = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local old = tonumber(redis.call('HGET', K .. 'rv', uid) or '0')
  local tomb = tonumber(redis.call('GET', K .. 't:' .. uid) or '0')
  if v > old and v > tomb and n > 0 then
    redis.call('DEL', K .. 'r:' .. uid)
    for j = i + 3, i + 2 + n do redis.call('SADD', K .. 'r:' .. uid, ARGV[j]) end
    redis.call('HSET', K .. 'rv', uid, ARGV[i + 1])
  end
  i = i + 3 + n
end
return 1
"""
)

#: ARGV: K, id. Returns {1, {{id, version, {json...}}...}, {{user, version, {rooms}}...},
#: now}, or {0} when our own liveness key is missing. The full read: at start and
#: after a resync; :data:`DIGEST` and :data:`LOAD_ONE` keep the mirrors right after.
LOAD = (
    _COMMON
    + """
-- Our own key missing means Redis lost its data (or reaped us): what it holds
-- now is not the cluster's state; the caller resyncs instead.
if not alive(ARGV[2]) then return {0} end
local insts, rooms = {}, {}
for _, inst in ipairs(redis.call('SMEMBERS', K .. 'instances')) do
  if alive(inst) then
    local ver = redis.call('HGET', K .. 'ver', inst) or '0'
    table.insert(insts, {inst, ver, redis.call('HVALS', K .. 'm:' .. inst)})
  end
end
local rv = redis.call('HGETALL', K .. 'rv')
for i = 1, #rv, 2 do
  table.insert(rooms, {rv[i], rv[i + 1], redis.call('SMEMBERS', K .. 'r:' .. rv[i])})
end
return {1, insts, rooms, str(now())}
"""
)

#: ARGV: K, id, since (Redis time in microseconds), horizon (microseconds). What
#: changed since ``since``: {1, now, {{id, version}...}, {{user, version, {rooms}}...},
#: n} (live processes with their versions; users whose rooms changed, with their
#: room sets; how many users have rooms); {2, now} when ``since`` is older than
#: the horizon (load in full); {0} when our own key is missing. Reads grow with
#: processes and changes, never with connections.
DIGEST = (
    _COMMON
    + """
if not alive(ARGV[2]) then return {0} end
local t = now()
local since, horizon = tonumber(ARGV[3]), t - tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', K .. 'rchg', '-inf', '(' .. str(horizon))
if since < horizon then return {2, str(t)} end
local insts, rooms = {}, {}
for _, inst in ipairs(redis.call('SMEMBERS', K .. 'instances')) do
  if alive(inst) then
    table.insert(insts, {inst, redis.call('HGET', K .. 'ver', inst) or '0'})
  end
end
-- Inclusive: a change in the same microsecond as the last digest is read again
-- (applying a room set is idempotent).
for _, uid in ipairs(redis.call('ZRANGEBYSCORE', K .. 'rchg', str(since), '+inf')) do
  local v = redis.call('HGET', K .. 'rv', uid) or redis.call('GET', K .. 't:' .. uid) or '0'
  table.insert(rooms, {uid, v, redis.call('SMEMBERS', K .. 'r:' .. uid)})
end
return {1, str(t), insts, rooms, redis.call('HLEN', K .. 'rv')}
"""
)

#: ARGV: K, id, other id. One process's connections: {1, version, {json...}}, {1}
#: when that process is gone, {0} when our own key is missing.
LOAD_ONE = (
    _COMMON
    + """
if not alive(ARGV[2]) then return {0} end
local inst = ARGV[3]
if not alive(inst) then return {1} end
local ver = redis.call('HGET', K .. 'ver', inst) or '0'
return {1, ver, redis.call('HVALS', K .. 'm:' .. inst)}
"""
)


#: ARGV: K, id, user, connection id, cap. Claim one of the user's ``cap`` slots:
#: 1, or 0 when the user's live connections already fill them. Slots of dead
#: processes are freed on the way.
CLAIM = (
    _COMMON
    + """
local key = K .. 'cap:' .. ARGV[3]
local f = redis.call('HGETALL', key)
local n = 0
for i = 1, #f, 2 do
  if alive(f[i + 1]) then n = n + 1 else redis.call('HDEL', key, f[i]) end
end
if n >= tonumber(ARGV[5]) then return 0 end
redis.call('HSET', key, ARGV[4], ARGV[2])
return 1
"""
)

#: ARGV: K, id, user, connection id, cap. Take a slot for the connection whatever
#: happens (``WS_CAP_POLICY=newest``): while the user's slots are full, the oldest
#: is freed. Returns {{connection id, process id}...} of the freed slots of live
#: processes, whose connections the caller closes; slots of dead ones just go.
CLAIM_NEWEST = (
    _COMMON
    + """
local key, order = K .. 'cap:' .. ARGV[3], K .. 'capt:' .. ARGV[3]
local f = redis.call('HGETALL', key)
local n = 0
for i = 1, #f, 2 do
  if alive(f[i + 1]) then n = n + 1
  else redis.call('HDEL', key, f[i]); redis.call('ZREM', order, f[i]) end
end
local evicted = {}
while n >= tonumber(ARGV[5]) and n > 0 do
  -- A slot claimed under 'refuse' has no time: it counts as the oldest.
  local oldest = nil
  for _, conn in ipairs(redis.call('HKEYS', key)) do
    if not redis.call('ZSCORE', order, conn) then oldest = conn; break end
  end
  if not oldest then oldest = redis.call('ZRANGE', order, 0, 0)[1] end
  table.insert(evicted, {oldest, redis.call('HGET', key, oldest)})
  redis.call('HDEL', key, oldest)
  redis.call('ZREM', order, oldest)
  n = n - 1
end
redis.call('HSET', key, ARGV[4], ARGV[2])
redis.call('ZADD', order, str(now()), ARGV[4])
return evicted
"""
)

#: ARGV: K, user, connection id. Free a claimed slot.
RELEASE = """
local K = ARGV[1]
redis.call('HDEL', K .. 'cap:' .. ARGV[2], ARGV[3])
redis.call('ZREM', K .. 'capt:' .. ARGV[2], ARGV[3])
return 1
"""
