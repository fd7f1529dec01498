-- Sets or removes one gateway instance's part of a user's presence, and recomputes the user's status.
-- KEYS[1]  P:user:<userId> hash: `status`, `lastSeen` (ms), and for each instance with sockets of the
--          user `p:<member>` = 'a' (one of them is active) or 'w' (all away), then "\n<workspaceId>" each
-- ARGV[1]  the instance's field, p:<member>
-- ARGV[2]  its value, or '' to remove it
-- ARGV[3]  lastSeen (ms) if this makes the user offline; '' = now
-- ARGV[4]  how long an offline user's status and lastSeen stay readable (ms)
-- Returns {status, lastSeen, changed '1'|'0', version, n, n workspaces before, workspaces after}:
-- version (Valkey's clock in µs) orders the workspace writes made from this answer (set_workspace.lua).

local key, field, value = KEYS[1], ARGV[1], ARGV[2]
local t = redis.call('TIME')
local now = string.format('%.0f', t[1] * 1000 + math.floor(t[2] / 1000))
local version = string.format('%.0f', t[1] * 1000000 + t[2])

-- Status and workspaces over the instance fields of `h` (an HGETALL answer), `field` set to `with`.
local function summary(h, with)
  local status, workspaces = 'offline', {}
  local function add(v)
    if string.sub(v, 1, 1) == 'a' then
      status = 'online'
    elseif status == 'offline' then
      status = 'away'
    end
    for w in string.gmatch(string.sub(v, 2), '[^\n]+') do
      workspaces[w] = true
    end
  end
  for i = 1, #h, 2 do
    if string.sub(h[i], 1, 2) == 'p:' and (with == nil or h[i] ~= field) then
      add(h[i + 1])
    end
  end
  if with ~= nil and with ~= '' then
    add(with)
  end
  return status, workspaces
end

local h = redis.call('HGETALL', key)
local prev, seen = 'offline', nil
for i = 1, #h, 2 do
  if h[i] == 'status' then
    prev = h[i + 1]
  elseif h[i] == 'lastSeen' then
    seen = h[i + 1]
  end
end
local _, before = summary(h, nil)
local status, after = summary(h, value)

if value == '' then
  redis.call('HDEL', key, field)
else
  redis.call('HSET', key, field, value)
end
local changed = status ~= prev
if changed then
  seen = (status == 'offline' and ARGV[3] ~= '') and ARGV[3] or now
  redis.call('HSET', key, 'status', status, 'lastSeen', seen)
end
if status == 'offline' then
  redis.call('PEXPIRE', key, ARGV[4])
else
  redis.call('PERSIST', key)
end

local out = {status, seen or now, changed and '1' or '0', version, '0'}
for w in pairs(before) do
  out[#out + 1] = w
end
out[5] = tostring(#out - 5)
for w in pairs(after) do
  out[#out + 1] = w
end
return out
