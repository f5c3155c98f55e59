-- read_rollouts.lua: rollouts with their latest attempt, in one round trip.
-- ARGV[3..] rollout ids
-- returns per id {rollout fields, latest attempt fields or {}} ({} , {} for a missing rollout)
local out = {}
for i = 3, #ARGV, 1 do
  local rk = rkey(ARGV[i])
  local ro = redis.call('HGETALL', rk)
  local latest = redis.call('HGET', rk, 'latest')
  if latest then
    table.insert(out, {ro, redis.call('HGETALL', akey(ARGV[i], latest))})
  else
    table.insert(out, {ro, {}})
  end
end
return out
