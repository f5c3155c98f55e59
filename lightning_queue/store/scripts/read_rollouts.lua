-- read_rollouts.lua: rollouts with their latest attempt, in one round trip.
-- ARGV[3..] rollout ids
-- returns per id {rollout fields, latest attempt fields or {}} ({} , {} for a missing rollout), or
--   {{}, {}, error, key} when a key is not a hash: one corrupt record must not fail the whole read
local function hash_of(key)
  local fields = redis.pcall('HGETALL', key)
  if type(fields) == 'table' and fields.err then return nil, fields.err end
  return fields
end
local out = {}
for i = 3, #ARGV, 1 do
  local rk = rkey(ARGV[i])
  local ro, err = hash_of(rk)
  if err then
    table.insert(out, {{}, {}, err, rk})
  else
    local latest = redis.call('HGET', rk, 'latest')
    if latest then
      local ak = akey(ARGV[i], latest)
      local at, aerr = hash_of(ak)
      if aerr then table.insert(out, {{}, {}, aerr, ak}) else table.insert(out, {ro, at}) end
    else
      table.insert(out, {ro, {}})
    end
  end
end
return out
