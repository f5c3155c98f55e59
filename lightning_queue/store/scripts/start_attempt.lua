-- start_attempt.lua: add attempt k+1 to an existing rollout, outside the queue (ignores max_attempts).
-- ARGV[3] rollout id   ARGV[4] new attempt id   ARGV[5] worker id ('' none)
-- returns {rollout fields, attempt fields}, or ERR_NO_ROLLOUT rid
local rid, aid, wid = ARGV[3], ARGV[4], ARGV[5]
if redis.call('EXISTS', rkey(rid)) == 0 then return redis.error_reply(ERR_NO_ROLLOUT .. ' ' .. rid) end
local ak = akey(rid, aid)
-- An attempt id that exists already: the same call resent after its reply was lost; a second attempt
-- record under one id would count it twice.
if redis.call('EXISTS', ak) == 0 then
  ak = new_attempt(rid, aid, wid, '', '')
  set_rollout_status(rid, 'preparing')
end
return {redis.call('HGETALL', rkey(rid)), redis.call('HGETALL', ak)}
