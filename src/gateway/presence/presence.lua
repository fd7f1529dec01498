-- Presence in Valkey (see src/gateway/presence/mod.rs for the key layout and why).
-- One script for every operation, so each runs atomically and two instances racing on the
-- same user always agree on whether the user's status changed.
--
-- ARGV[1] operation: set | beat | leave | retire | reap
-- ARGV[2] key prefix P ("{redis.prefix}-presence")
-- ARGV[3] instance TTL (ms): an instance whose last heartbeat is older is dead
-- ARGV[4] how long an offline user's status and lastSeen stay readable (ms)
-- ARGV[5..] operation arguments (below)
-- Times are Valkey's clock (TIME), so instances' clocks never need to agree.

local op, P = ARGV[1], ARGV[2]
local ttl = tonumber(ARGV[3])
local retain = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local INSTANCES = P .. ':instances'
local REAPING = P .. ':reaping'
local LEFT = P .. ':left'

local function ms(x)
  return string.format('%.0f', x)
end

-- 1: registered (its sockets count, even when its heartbeat is late: only a claim ends that, so
-- a Valkey stall that delays every heartbeat changes nobody's status);
-- 0: claimed and being reaped (its sockets no longer count, and stay until reaped);
-- -1: unknown (reaped already): its leftovers are deleted when seen.
local liveness_cache = {}
local function liveness(m)
  local c = liveness_cache[m]
  if c ~= nil then
    return c
  end
  if redis.call('ZSCORE', INSTANCES, m) then
    c = 1
  elseif redis.call('HEXISTS', REAPING, m) == 1 then
    c = 0
  else
    c = -1
  end
  liveness_cache[m] = c
  return c
end

-- A socket's value: 'a' (active) or 'w' (away), then "\n" and its workspace ids, "\n"-separated.
local function add_workspaces(v, set)
  for w in string.gmatch(string.sub(v, 2), '[^\n]+') do
    set[w] = true
  end
end

-- Sets (value) or removes (value == nil) one socket field of a user, recomputes the user's
-- status over the sockets of live instances, keeps the workspace hashes in step, and returns
-- {changed, status, lastSeen, targets, version, at, foreign, fresh}: targets are the workspaces
-- to tell (all of the user's when the status changed; otherwise only workspaces none of the
-- user's sockets was in), the first `fresh` of them being those none of its sockets was in. Every call with targets is an announcement, counted in `P:ann:<user>`
-- (`v`; `by` made it at `at`; `ot`: when another member last made one, 0: never), which lives
-- as long as the user's key; `version`, `at` and `foreign` (`ot`) describe it. An instance
-- coalescing updates uses them to prove that nobody else told the user's rooms anything
-- meanwhile (see coalesce.rs). `by` is nil for a reaper: its announcements are foreign to all.
local function apply(user, field, value, seen, by)
  local ukey = P .. ':user:' .. user
  local h = redis.call('HGETALL', ukey)
  local prev, prev_seen = 'offline', nil
  local socks = {}
  for i = 1, #h, 2 do
    local f, v = h[i], h[i + 1]
    if f == 'status' then
      prev = v
    elseif f == 'lastSeen' then
      prev_seen = v
    elseif string.sub(f, 1, 2) == 's:' then
      socks[f] = v
    end
  end
  local before = {}
  for _, v in pairs(socks) do
    add_workspaces(v, before)
  end
  if value then
    socks[field] = value
    redis.call('HSET', ukey, field, value)
  elseif socks[field] then
    socks[field] = nil
    redis.call('HDEL', ukey, field)
  end
  local after, status, left = {}, 'offline', false
  for f, v in pairs(socks) do
    local l = liveness(string.match(f, '^s:([^:]+):') or '')
    if l == 1 then
      add_workspaces(v, after)
      if string.sub(v, 1, 1) == 'a' then
        status = 'online'
      elseif status == 'offline' then
        status = 'away'
      end
      left = true
    elseif l == 0 then
      left = true
    else
      socks[f] = nil
      redis.call('HDEL', ukey, f)
    end
  end
  local changed = status ~= prev
  local last = prev_seen or ms(now)
  if changed then
    last = seen or ms(now)
    redis.call('HSET', ukey, 'status', status, 'lastSeen', last)
  end
  if left then
    redis.call('PERSIST', ukey)
  elseif redis.call('EXISTS', ukey) == 1 then
    redis.call('PEXPIRE', ukey, retain)
  end
  -- The workspaces first told about the user come first (`fresh` of them).
  local targets = {}
  for w in pairs(after) do
    redis.call('HSET', P .. ':ws:' .. w, user, status)
    if not before[w] then
      targets[#targets + 1] = w
    end
  end
  local fresh = #targets
  for w in pairs(before) do
    if not after[w] then
      redis.call('HDEL', P .. ':ws:' .. w, user)
    end
    if changed then
      targets[#targets + 1] = w
    end
  end
  local akey = P .. ':ann:' .. user
  local version, foreign = 0, '0'
  if #targets > 0 then
    local a = redis.call('HMGET', akey, 'v', 'by', 'at', 'ot')
    version = (tonumber(a[1]) or 0) + 1
    foreign = a[4] or '0'
    by = by or ''
    if a[2] ~= by or by == '' then
      foreign = a[3] or '0'
    end
    redis.call('HSET', akey, 'v', version, 'by', by, 'at', ms(now), 'ot', foreign)
  end
  if left then
    redis.call('PERSIST', akey)
  elseif redis.call('EXISTS', akey) == 1 then
    redis.call('PEXPIRE', akey, retain)
  end
  return changed, status, last, targets, version, ms(now), foreign, fresh
end


if op == 'set' then
  -- ARGV[5] member, [6] socket id, [7] user id, [8] value ('' removes), [9] lastSeen ('' = now)
  local m, sid, user, value, seen = ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
  -- A member that was claimed must resync first: its other sockets no longer count, so any
  -- answer computed now would be wrong.
  if not redis.call('ZSCORE', INSTANCES, m) then
    return {'lost'}
  end
  local entry = sid .. '|' .. user
  if value == '' then
    value = nil
    redis.call('SREM', P .. ':sockets:' .. m, entry)
  else
    redis.call('SADD', P .. ':sockets:' .. m, entry)
  end
  if seen == '' then
    seen = nil
  end
  local changed, status, last, targets, version, at, foreign, fresh =
    apply(user, 's:' .. m .. ':' .. sid, value, seen, m)
  local out = {'ok', changed and '1' or '0', status, last, tostring(version), at, foreign, tostring(fresh)}
  for _, w in ipairs(targets) do
    out[#out + 1] = w
  end
  return out
end

if op == 'beat' then
  -- ARGV[5] member, [6] '1' to register it, [7] most instances to claim
  local m, register, most = ARGV[5], ARGV[6] == '1', tonumber(ARGV[7])
  local prev = redis.call('ZSCORE', INSTANCES, m)
  local state = 'ok'
  if register then
    state = 'new'
  elseif not prev then
    state = 'lost'
  end
  if state ~= 'lost' then
    redis.call('ZADD', INSTANCES, ms(now), m)
  end
  local out = {state}
  -- Only an instance whose own previous heartbeat is recent judges others: after a stall of
  -- Valkey (or of this instance) every heartbeat is late, and nobody is dead for that.
  if not prev or tonumber(prev) < now - ttl then
    return out
  end
  -- Expired instances: whoever moves one from INSTANCES to REAPING reaps it.
  local dead = redis.call('ZRANGEBYSCORE', INSTANCES, '-inf', '(' .. ms(now - ttl), 'LIMIT', 0, most)
  for _, d in ipairs(dead) do
    -- lastSeen of its users: its last heartbeat, or when it left cleanly.
    local last = redis.call('HGET', LEFT, d)
    if last then
      redis.call('HDEL', LEFT, d)
    else
      last = ms(tonumber(redis.call('ZSCORE', INSTANCES, d)))
    end
    redis.call('ZREM', INSTANCES, d)
    redis.call('HSET', REAPING, d, ms(now) .. ':' .. last)
    out[#out + 1] = d
    out[#out + 1] = last
  end
  -- Claims whose reaper stopped renewing them (it died too) are taken over.
  local r = redis.call('HGETALL', REAPING)
  for i = 1, #r, 2 do
    local claimed, last = string.match(r[i + 1], '^(%d+):(%d+)$')
    if claimed == nil or tonumber(claimed) < now - ttl then
      last = last or ms(now)
      redis.call('HSET', REAPING, r[i], ms(now) .. ':' .. last)
      out[#out + 1] = r[i]
      out[#out + 1] = last
    end
  end
  return out
end

if op == 'leave' then
  -- ARGV[5] member, [6] grace (ms): the member expires `grace` from now, so survivors reap
  -- its sockets then, unless their users came back elsewhere.
  local m, grace = ARGV[5], tonumber(ARGV[6])
  if redis.call('ZSCORE', INSTANCES, m) then
    redis.call('ZADD', INSTANCES, ms(now - ttl + grace), m)
    redis.call('HSET', LEFT, m, ms(now))
  end
  return {'ok'}
end

if op == 'retire' then
  -- ARGV[5] member: an instance gives up one of its own old members (after a resync).
  local m = ARGV[5]
  if redis.call('ZREM', INSTANCES, m) == 1 or redis.call('HEXISTS', REAPING, m) == 1 then
    redis.call('HSET', REAPING, m, ms(now) .. ':' .. ms(now))
  end
  return {'ok'}
end

if op == 'reap' then
  -- ARGV[5] dead member, [6] most sockets this call, [7] lastSeen of its sockets (ms).
  -- Returns {done, then per socket removed: user, status, lastSeen, n, n workspaces to tell}
  -- (a reaper's announcements are foreign to every instance, so no version is returned).
  local m, most, seen = ARGV[5], tonumber(ARGV[6]), ARGV[7]
  local skey = P .. ':sockets:' .. m
  local out = {'0'}
  local entries = redis.call('SPOP', skey, most)
  for _, e in ipairs(entries) do
    local sid, user = string.match(e, '^([^|]+)|(.*)$')
    if sid then
      local _, status, last, targets = apply(user, 's:' .. m .. ':' .. sid, nil, seen)
      out[#out + 1] = user
      out[#out + 1] = status
      out[#out + 1] = last
      out[#out + 1] = tostring(#targets)
      for _, w in ipairs(targets) do
        out[#out + 1] = w
      end
    end
  end
  if redis.call('SCARD', skey) == 0 then
    redis.call('DEL', skey)
    redis.call('HDEL', REAPING, m)
    out[1] = '1'
  else
    redis.call('HSET', REAPING, m, ms(now) .. ':' .. seen)
  end
  return out
end

return redis.error_reply('presence: unknown operation ' .. tostring(op))
