-- update_attempt.lua: set attempt fields; a status change cascades (worker rule, retry rule, fencing).
-- ARGV[3] rollout id   ARGV[4] attempt id or "latest"
-- ARGV[5] status ('' = leave)   ARGV[6] "1" if worker id given   ARGV[7] worker id
-- ARGV[8] last heartbeat ('' = leave)   ARGV[9] "1" if metadata given   ARGV[10] metadata (msgpack)
-- returns the attempt's fields, or ERR_NO_ROLLOUT rid / ERR_NO_ATTEMPTS rid / ERR_NO_ATTEMPT rid aid
local rid, aid = ARGV[3], ARGV[4]
local rk = rkey(rid)
if redis.call('EXISTS', rk) == 0 then return redis.error_reply(ERR_NO_ROLLOUT .. ' ' .. rid) end
if aid == 'latest' then
  aid = redis.call('HGET', rk, 'latest')
  if not aid then return redis.error_reply(ERR_NO_ATTEMPTS .. ' ' .. rid) end
end
local ak = akey(rid, aid)
if redis.call('EXISTS', ak) == 0 then
  if not redis.call('HGET', rk, 'latest') then
    return redis.error_reply(ERR_NO_ATTEMPTS .. ' ' .. rid)
  end
  return redis.error_reply(ERR_NO_ATTEMPT .. ' ' .. rid .. ' ' .. aid)
end
if ARGV[6] == '1' then redis.call('HSET', ak, 'worker_id', ARGV[7]) end
if ARGV[8] ~= '' then redis.call('HSET', ak, 'last_heartbeat_time', ARGV[8]) end
if ARGV[9] == '1' then redis.call('HSET', ak, 'metadata', ARGV[10]) end
if ARGV[5] ~= '' then
  set_attempt_status(rid, aid, ARGV[5])
elseif ARGV[6] == '1' then
  sync_worker(ARGV[7], rid, aid, redis.call('HGET', ak, 'status'))
end
return redis.call('HGETALL', ak)
