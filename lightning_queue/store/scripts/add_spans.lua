-- add_spans.lua: store spans; each stored span is a heartbeat of its attempt and renews its lease.
-- ARGV[3..] per span, 5 slots: rollout id, attempt id, span id, sequence id, span (msgpack)
-- returns per span 1 (stored) or 0 (duplicate), or ERR_NO_ROLLOUT rid / ERR_NO_ATTEMPT rid aid
-- Validate everything first: a script is not rolled back, so an error must come before any write.
local checked = {}
for i = 3, #ARGV, 5 do
  local rid, aid = ARGV[i], ARGV[i + 1]
  local pair = rid .. '\0' .. aid
  if not checked[pair] then
    if redis.call('EXISTS', rkey(rid)) == 0 then return redis.error_reply(ERR_NO_ROLLOUT .. ' ' .. rid) end
    if redis.call('EXISTS', akey(rid, aid)) == 0 then
      return redis.error_reply(ERR_NO_ATTEMPT .. ' ' .. rid .. ' ' .. aid)
    end
    checked[pair] = true
  end
end
local out = {}
local touched = {}
local top_seq = {}
local stored = 0
for i = 3, #ARGV, 5 do
  local rid, aid, sid, seq = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  local field = aid .. ':' .. sid
  if redis.call('HSETNX', P .. KEY_SPANS .. rid, field, ARGV[i + 4]) == 0 then
    table.insert(out, 0)
  else
    table.insert(out, 1)
    redis.call('ZADD', P .. KEY_SPAN_ORDER .. rid .. ':' .. aid, seq, sid)
    if seq > (top_seq[rid] or 0) then top_seq[rid] = seq end
    stored = stored + 1
    touched[rid .. '\0' .. aid] = {rid, aid}
  end
end
-- Once per rollout, not per span: raise the sequence counter to the highest explicit id.
for rid, seq in pairs(top_seq) do
  local sk = P .. KEY_SEQUENCE .. rid
  if seq > tonumber(redis.call('GET', sk) or '0') then redis.call('SET', sk, seq) end
end
if stored > 0 then redis.call('HINCRBY', P .. KEY_META, 'spans', stored) end
for _, pair in pairs(touched) do
  local rid, aid = pair[1], pair[2]
  local ak = akey(rid, aid)
  redis.call('HSET', ak, 'last_heartbeat_time', NOW)
  local a = redis.call('HMGET', ak, 'status', 'entry', 'consumer', 'leased')
  local astatus, entry, leased = a[1], a[2], a[4] == '1'
  -- A leased attempt that left preparing/running lost its lease with it (reclaimed, released, ended),
  -- and its worker gives up an attempt whose lease it lost: reviving it would leave a running attempt
  -- nobody ends or renews. So its late spans are kept and beat its heartbeat, but move nothing.
  -- Attempts without a lease keep the contract's revival (their liveness is `unresponsive_seconds`).
  if astatus == 'preparing' or (astatus == 'unresponsive' and not leased) then
    astatus = 'running'
    redis.call('HSET', ak, 'status', astatus)
  end
  if entry then redis.call('XCLAIM', Q, GROUP, a[3], 0, entry, 'JUSTID') end
  local rk = rkey(rid)
  if redis.call('HGET', rk, 'latest') == aid and (LIVE_ATTEMPT[astatus] or not leased) then
    local rs = redis.call('HGET', rk, 'status')
    if rs == 'preparing' or rs == 'requeuing' then set_rollout_status(rid, 'running') end
  end
end
return out
