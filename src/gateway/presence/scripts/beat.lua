-- A gateway instance's heartbeat, and the claims on instances that stopped beating.
-- KEYS[1]  P:members hash: member -> "<deadline> <lastSeen>" while it lives, "<deadline> <lastSeen> <claimer>"
--          once claimed; deadline (ms): when it is dead, or when the claim lapses and may be taken over;
--          lastSeen (ms): its last heartbeat, or when it shut down cleanly
-- ARGV[1]  this instance's member
-- ARGV[2]  'beat', 'join' (first beat of a new member) or 'leave' (clean shutdown)
-- ARGV[3]  how long the entry lives without another beat (ms): the TTL, or the grace period on 'leave'
-- ARGV[4]  on 'join': the instance's previous member ('' if none), claimed by it to remove its entries
-- ARGV[5]  most claims to make
-- Returns {'ok' | 'lost', then member, lastSeen of each member claimed}. 'lost': this member was claimed
-- as dead (or is unknown): nothing was written; join as a new member.

local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local me, op, life, previous = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]

local function parse(v)
  local deadline, seen, claimer = string.match(v or '', '^(%d+) (%d+) ?(.*)$')
  return tonumber(deadline), seen, claimer
end
local function entry(seen, claimer)
  return string.format('%.0f %s', now + life, seen) .. (claimer and (' ' .. claimer) or '')
end

local deadline, _, claimer = parse(redis.call('HGET', KEYS[1], me))
if op ~= 'join' and (deadline == nil or claimer ~= '') then
  return {'lost'}
end
redis.call('HSET', KEYS[1], me, entry(string.format('%.0f', now)))
local out = {'ok'}
local function claim(member, seen)
  seen = seen or string.format('%.0f', now)
  redis.call('HSET', KEYS[1], member, entry(seen, me))
  out[#out + 1] = member
  out[#out + 1] = seen
end
if op == 'join' and previous ~= '' then
  local _, seen = parse(redis.call('HGET', KEYS[1], previous))
  claim(previous, seen)
end
-- Only an instance whose own previous beat was on time judges others: after a stall of Valkey (or
-- of this instance) every beat is late, and nobody is dead for that.
if op ~= 'beat' or deadline < now then
  return out
end
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local d, seen = parse(all[i + 1])
  if #out > 2 * tonumber(ARGV[5]) then
    break
  end
  if d == nil or d < now then
    claim(all[i], seen)
  end
end
return out
