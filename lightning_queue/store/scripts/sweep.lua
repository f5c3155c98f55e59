-- sweep.lua: the watchdog. Times out and marks unresponsive the latest attempts of preparing/running
-- rollouts (a leased attempt holding no entry counts as silent once a lease passes without a heartbeat),
-- then reclaims stream entries whose holder's lease lapsed (a dead worker's).
-- ARGV[3] lock ttl ms (0 = no lock)   ARGV[4] lease ms (0 = no reclaim)   ARGV[5] reclaimer consumer
-- returns {verdicts, reclaimed entries}, or {-1, 0} when another sweep holds the lock
local lock_ms, lease_ms, reaper = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
if lock_ms > 0 and not redis.call('SET', P .. KEY_SWEEP_LOCK, NOW, 'NX', 'PX', lock_ms) then return {-1, 0} end
local now = tonumber(NOW)
local verdicts, reclaimed = 0, 0
local bound, version = nil, nil
-- Would a claim now refuse queued rollout `rid`? (paused, or no slot for it under the staleness bound)
local function gate_closed(rid)
  if redis.call('EXISTS', P .. KEY_PAUSE) == 1 then return true end
  if version == nil then
    bound = staleness_bound()
    version = tonumber(redis.call('GET', P .. KEY_POLICY_VERSION) or '0')
  end
  return bound ~= nil and bounded(rid, bound) and bound.admitted >= admission_cap(bound, version)
end
for _, rstatus in ipairs(RUNNING_LIST) do
  for _, rid in ipairs(redis.call('ZRANGE', P .. KEY_STATUS_INDEX .. rstatus, 0, -1)) do
    local rk = rkey(rid)
    local aid = redis.call('HGET', rk, 'latest')
    if aid then
      local a = redis.call('HMGET', akey(rid, aid), 'status', 'start_time', 'last_heartbeat_time', 'entry', 'leased')
      if LIVE_ATTEMPT[a[1]] then
        local timeout = tonumber(redis.call('HGET', rk, 'cfg_timeout') or '')
        local unresp = tonumber(redis.call('HGET', rk, 'cfg_unresponsive') or '')
        local started = tonumber(a[2])
        local verdict = nil
        if timeout and now - started > timeout then
          verdict = 'timeout'
        elseif unresp and now - tonumber(a[3] or a[2]) > unresp then
          verdict = 'unresponsive'
        elseif lease_ms > 0 and a[5] == '1' and not a[4] and (now - tonumber(a[3] or a[2])) * 1000 > lease_ms then
          -- Leased, live again (set so by hand) but holding no entry: nobody renews it, so its last
          -- heartbeat stands for the lease it can lose.
          verdict = 'unresponsive'
        end
        if verdict then
          set_attempt_status(rid, aid, verdict)
          verdicts = verdicts + 1
        end
      end
    end
  end
end
if lease_ms > 0 and redis.call('EXISTS', Q) == 1 then
  ensure_group()
  local cursor = '0-0'
  for _ = 1, 20 do
    local reply = redis.call('XAUTOCLAIM', Q, GROUP, reaper, lease_ms, cursor, 'COUNT', 100)
    cursor = reply[1]
    for _, e in ipairs(reply[2]) do
      local rid = e and entry_field(e[2], 'rid')
      if rid then
        local rk = rkey(rid)
        local aid = redis.call('HGET', rk, 'latest')
        local ak = aid and akey(rid, aid)
        if ak and redis.call('HGET', ak, 'entry') == e[1] and LIVE_ATTEMPT[redis.call('HGET', ak, 'status')] then
          set_attempt_status(rid, aid, 'unresponsive')
          verdicts = verdicts + 1
        elseif redis.call('HGET', rk, 'qentry') == e[1] and redis.call('HGET', rk, 'held') == '1'
          and gate_closed(rid) then
          -- Held by the claim gate, which still refuses it: back to the held consumer, in its place.
          redis.call('XCLAIM', Q, GROUP, HELD_CONSUMER, 0, e[1], 'JUSTID')
          e = nil
        elseif redis.call('HGET', rk, 'qentry') == e[1] then
          -- Read but never claimed (the reader died in between), or held with no claim serving it for a
          -- lease though the gate is open (its workers are gone): queue the rollout afresh.
          redis.call('HDEL', rk, 'qentry', 'held')
          push_queue(rid)
        end
      end
      if e then
        redis.call('XACK', Q, GROUP, e[1])
        redis.call('XDEL', Q, e[1])
        reclaimed = reclaimed + 1
      end
    end
    if cursor == '0-0' then break end
  end
end
return {verdicts, reclaimed}
