-- staleness.lua: the namespace's staleness bound (issue 17), read by the claim gate (admit in common.lua).
-- A bound set where none was starts a count window: admitted 0 at base = the policy version now, under a
-- fresh `gen` (slots of an earlier window are not given back to this one). Setting it again changes S, B,
-- modes and policy and keeps the window; clear, then set, to start counting afresh.
-- ARGV[3] "set" | "clear" | "get"   set: ARGV[4] S   ARGV[5] B   ARGV[6] modes (",train,")   ARGV[7] policy
--   ARGV[8] gen for a new window
-- returns {bound fields or {}, policy version}
local op = ARGV[3]
local sk = P .. KEY_STALENESS
local version = tonumber(redis.call('GET', P .. KEY_POLICY_VERSION) or '0')
if op == 'set' then
  if redis.call('EXISTS', sk) == 0 then
    redis.call('HSET', sk, 'base', version, 'gen', ARGV[8], 'admitted', 0)
  end
  redis.call('HSET', sk, 'max_staleness', ARGV[4], 'batch_size', ARGV[5], 'modes', ARGV[6], 'policy', ARGV[7])
  wake_gate('bound', ARGV[4])
elseif op == 'clear' then
  if redis.call('DEL', sk) == 1 then wake_gate('bound', '') end
end
return {redis.call('HGETALL', sk), version}
