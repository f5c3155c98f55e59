-- update_resources.lua: upsert a resources snapshot; a new id starts at version 1, an old one goes +1.
-- Every call also raises the namespace's policy version by one and stamps the snapshot with it (issue 17),
-- and wakes gated workers (a higher version may admit rollouts the staleness bound held back).
-- ARGV[3] resources id   ARGV[4] resources (msgpack)
-- returns the snapshot's fields
local id = ARGV[3]
local k = P .. KEY_RESOURCES .. id
local now = tonumber(NOW)
local prev = redis.call('HMGET', k, 'version', 'update_time', 'create_time')
local stamp = NOW
local created = NOW
local pv = redis.call('INCR', P .. KEY_POLICY_VERSION)
if prev[1] then
  -- update_time must strictly grow even when two updates share a clock tick.
  if now <= tonumber(prev[2]) then stamp = string.format('%.17g', tonumber(prev[2]) + 1e-6) end
  redis.call('HSET', k, 'resources', ARGV[4], 'update_time', stamp, 'version', tonumber(prev[1]) + 1,
    'policy_version', pv)
  created = prev[3] or NOW
else
  redis.call('HSET', k, 'resources_id', id, 'resources', ARGV[4], 'create_time', NOW, 'update_time', NOW,
    'version', 1, 'policy_version', pv)
end
-- Both indexes score the field they order by. NX: a snapshot stored before the create_time index
-- existed joins it at its next update.
redis.call('ZADD', P .. KEY_RESOURCES_INDEX, stamp, id)
redis.call('ZADD', P .. KEY_RESOURCES_CREATED, 'NX', created, id)
wake_gate('version', pv)
return redis.call('HGETALL', k)
