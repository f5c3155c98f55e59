-- update_rollout.lua: set rollout fields; any status is accepted (the requeue rule still applies).
-- ARGV[3] rollout id   ARGV[4] status ('' = leave)   ARGV[5..] pairs: field, value ('\0' value = delete)
-- returns {rollout fields, latest attempt fields or {}}, or ERR_NO_ROLLOUT rid
local rid = ARGV[3]
local rk = rkey(rid)
if redis.call('EXISTS', rk) == 0 then return redis.error_reply(ERR_NO_ROLLOUT .. ' ' .. rid) end
local old_mode = redis.call('HGET', rk, 'mode') or NO_MODE
for i = 5, #ARGV, 2 do
  if ARGV[i + 1] == '\0' then redis.call('HDEL', rk, ARGV[i]) else redis.call('HSET', rk, ARGV[i], ARGV[i + 1]) end
end
index_mode(rid, old_mode)
if ARGV[4] ~= '' then set_rollout_status(rid, ARGV[4]) end
local latest = redis.call('HGET', rk, 'latest')
if latest then return {redis.call('HGETALL', rk), redis.call('HGETALL', akey(rid, latest))} end
return {redis.call('HGETALL', rk), {}}
