-- create.lua: create rollouts; "enqueue" puts each at the queue tail, "start" gives one attempt 1.
-- ARGV[3] "enqueue" | "start"   ARGV[4] worker id ('' none)   ARGV[5] attempt id (start only)
-- ARGV[6..] per rollout, 11 slots: rid, input, mode, has_resources_id, resources_id, config,
--           cfg_max, cfg_retry, cfg_timeout, cfg_unresponsive, metadata ('' = None)
-- returns per rollout {rollout fields, attempt fields or {}}
ensure_group()
local how, wid, aid = ARGV[3], ARGV[4], ARGV[5]
local latest = redis.call('ZREVRANGE', P .. KEY_RESOURCES_INDEX, 0, 0)[1]

-- The rollout whose 11 slots start at ARGV[i]; returns its attempt key when `how` is "start".
local function create(i)
  local rid = ARGV[i]
  local rk = rkey(rid)
  redis.call('HSET', rk, 'rollout_id', rid, 'input', ARGV[i + 1], 'start_time', NOW, 'config', ARGV[i + 5],
    'cfg_max', ARGV[i + 6], 'cfg_retry', ARGV[i + 7], 'nattempts', 0)
  if ARGV[i + 2] ~= '' then redis.call('HSET', rk, 'mode', ARGV[i + 2]) end
  local res = ARGV[i + 4]
  if ARGV[i + 3] ~= '1' then res = latest end
  if res then redis.call('HSET', rk, 'resources_id', res) end
  if ARGV[i + 8] ~= '' then redis.call('HSET', rk, 'cfg_timeout', ARGV[i + 8]) end
  if ARGV[i + 9] ~= '' then redis.call('HSET', rk, 'cfg_unresponsive', ARGV[i + 9]) end
  if ARGV[i + 10] ~= '' then redis.call('HSET', rk, 'metadata', ARGV[i + 10]) end
  redis.call('ZADD', P .. KEY_ALL_ROLLOUTS, NOW, rid)
  redis.call('ZADD', P .. KEY_OPEN_INDEX, NOW, rid)
  index_mode(rid, nil)
  if how == 'start' then
    local ak = new_attempt(rid, aid, wid, '', '')
    set_rollout_status(rid, 'preparing')
    return ak
  end
  set_rollout_status(rid, 'queuing')
  return nil
end

local out = {}
for i = 6, #ARGV, 11 do
  local rk = rkey(ARGV[i])
  local ak = nil
  if redis.call('EXISTS', rk) == 1 then
    -- Ids are fresh per call, so this is the same create resent after its reply was lost: writing again
    -- would put back in the queue a rollout that a worker has claimed (or finished) meanwhile.
    if how == 'start' then ak = akey(ARGV[i], aid) end
  else
    ak = create(i)
  end
  if ak then
    table.insert(out, {redis.call('HGETALL', rk), redis.call('HGETALL', ak)})
  else
    table.insert(out, {redis.call('HGETALL', rk), {}})
  end
end
return out
