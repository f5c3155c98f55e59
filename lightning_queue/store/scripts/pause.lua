-- pause.lua: the claims pause of a weight sync (issue 17). The pause key holds its holder's token and
-- expires after its TTL (Redis's clock), so a holder that crashes stops claims for one TTL at most; the
-- holder key has no TTL, so the first claim after an expiry can tell it expired (claim_gate in common.lua).
-- ARGV[3] "pause" | "renew" | "resume" | "status"   ARGV[4] holder ('' = any, resume only)   ARGV[5] ttl ms
-- returns pause/renew/resume: {1 done or 0 not, current holder or '', its remaining ms or -2 when none}
--         status: {paused 1/0, holder or '', remaining ms, holder of a pause that expired or ''}
local op, holder, ttl = ARGV[3], ARGV[4], tonumber(ARGV[5])
local pk, hk = P .. KEY_PAUSE, P .. KEY_PAUSE_HOLDER
local current = redis.call('GET', pk)
if op == 'pause' then
  if current and current ~= holder then return {0, current, redis.call('PTTL', pk)} end
  redis.call('SET', pk, holder, 'PX', ttl)
  redis.call('SET', hk, holder)
  if not current then wake_gate('pause', holder) end
  return {1, holder, ttl}
elseif op == 'renew' then
  if current ~= holder then return {0, current or '', -2} end
  redis.call('PEXPIRE', pk, ttl)
  return {1, holder, ttl}
elseif op == 'resume' then
  if not current or (holder ~= '' and current ~= holder) then
    -- An expired pause of this holder: its holder key goes, so no claim reports the expiry afterwards.
    if not current and (holder == '' or redis.call('GET', hk) == holder) then redis.call('DEL', hk) end
    return {0, current or '', current and redis.call('PTTL', pk) or -2}
  end
  redis.call('DEL', pk, hk)
  wake_gate('resume', current)
  return {1, current, -2}
end
local stale = ''
if not current then stale = redis.call('GET', hk) or '' end
return {current and 1 or 0, current or '', current and redis.call('PTTL', pk) or -2, stale}
