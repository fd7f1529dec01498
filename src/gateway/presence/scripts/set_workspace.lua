-- Lists a user in one workspace's presence hash, or removes them, unless a newer write came first
-- (writes for one user come from several instances, each after its own set_user.lua call).
-- KEYS[1]  P:ws:<workspaceId> hash: userId -> 'online' | 'away' (what the app reads)
-- KEYS[2]  the version of each user's entry in KEYS[1], a hash in the same hash slot (see store.rs)
-- ARGV[1]  userId
-- ARGV[2]  version of this write (from set_user.lua)
-- ARGV[3]  'online' | 'away', or '' to remove the user
-- ARGV[4]  how long the versions stay (ms)
-- Returns 1 when written, 0 when a newer write was there.

if tonumber(ARGV[2]) < tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0') then
  return 0
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
end
return 1
