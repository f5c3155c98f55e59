-- delete_rollouts.lua: remove terminal rollouts with their attempts, spans and every index entry (the
-- bounded step of retention: the caller passes a few ids per call, so a call never blocks Redis long).
-- ARGV[3] spare rollouts whose read mark (reads.py) is at or after this time ('' = spare none)
-- ARGV[4..] rollout ids
-- returns the number deleted; a rollout that is missing, not terminal, has a live attempt or a recent
-- read mark is left as it is (checked here, so a wait that marks it just before is never raced)
local spare = ARGV[3] ~= '' and tonumber(ARGV[3]) or nil
local deleted, attempts, spans = 0, 0, 0
for i = 4, #ARGV do
  local rid = ARGV[i]
  local rk = rkey(rid)
  local r = redis.call('HMGET', rk, 'status', 'mode', 'qentry')
  local status = r[1]
  if status and spare then
    local read = redis.call('ZSCORE', P .. KEY_READS, rid)
    if read and tonumber(read) >= spare then status = nil end
  end
  local aids = {}
  if status and TERMINAL[status] then aids = redis.call('ZRANGE', P .. KEY_ATTEMPTS .. rid, 0, -1) end
  -- A rollout set terminal by hand may still have a live attempt whose worker reports into it.
  local live = false
  for _, aid in ipairs(aids) do
    if LIVE_ATTEMPT[redis.call('HGET', akey(rid, aid), 'status')] then live = true end
  end
  if status and TERMINAL[status] and not live then
    for _, aid in ipairs(aids) do
      release_entry(akey(rid, aid))
      redis.call('DEL', akey(rid, aid), P .. KEY_SPAN_ORDER .. rid .. ':' .. aid)
      attempts = attempts + 1
    end
    -- A rollout moved to a terminal status while queued still has its unclaimed entry.
    if r[3] then
      redis.call('XACK', Q, GROUP, r[3])
      redis.call('XDEL', Q, r[3])
    end
    spans = spans + redis.call('HLEN', P .. KEY_SPANS .. rid)
    redis.call('DEL', rk, P .. KEY_ATTEMPTS .. rid, P .. KEY_SPANS .. rid, P .. KEY_SEQUENCE .. rid)
    redis.call('ZREM', P .. KEY_ALL_ROLLOUTS, rid)
    redis.call('ZREM', P .. KEY_STATUS_INDEX .. status, rid)
    redis.call('ZREM', P .. KEY_END_INDEX .. status, rid)
    redis.call('ZREM', P .. KEY_OPEN_INDEX, rid)
    redis.call('ZREM', P .. KEY_ENDED_INDEX, rid)
    redis.call('ZREM', P .. KEY_MODE_INDEX .. (r[2] or NO_MODE), rid)
    deleted = deleted + 1
  end
end
if attempts > 0 then redis.call('HINCRBY', P .. KEY_META, 'attempts', -attempts) end
if spans > 0 then redis.call('HINCRBY', P .. KEY_META, 'spans', -spans) end
return deleted
