-- finish.lua: a worker's end of one leased attempt in one step: check the lease, store the spans (assigning
-- the sequence ids they lack), end the attempt. Nothing is written unless the worker still holds the entry.
-- ARGV[3] consumer   ARGV[4] stream entry   ARGV[5] rollout id   ARGV[6] attempt id   ARGV[7] status
-- ARGV[8] "1" if metadata given   ARGV[9] metadata (msgpack)
-- ARGV[10..] per span, 3 slots: span id, sequence id ('' = assign one), span (msgpack; for '' it ends in
-- SEQUENCE_PLACEHOLDER, its sequence_id, which is replaced by the id assigned)
-- returns {verdict, first sequence id assigned (0 if none), spans skipped as duplicates}; the verdict is
--   1: stored and ended;
--   0: the entry is not held by the consumer (reclaimed, released, ended): nothing written;
--   2: a resend of a finish already applied (the attempt ended with this status by this entry's finish,
--      its `finished_by`): nothing written;
-- or ERR_NO_ROLLOUT rid / ERR_NO_ATTEMPT rid aid / ERR_BAD_PLACEHOLDER span id
local consumer, entry, rid, aid, status = ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local items = {}
local assign = {}
for i = 10, #ARGV, 3 do
  local blob = ARGV[i + 2]
  local item = {rid, aid, ARGV[i], tonumber(ARGV[i + 1]), blob}
  if ARGV[i + 1] == '' then
    if string.sub(blob, -#SEQUENCE_PLACEHOLDER) ~= SEQUENCE_PLACEHOLDER then
      return redis.error_reply(ERR_BAD_PLACEHOLDER .. ' ' .. ARGV[i])
    end
    table.insert(assign, item)
  end
  table.insert(items, item)
end
-- Validate everything first: a script is not rolled back, so an error must come before any write.
if redis.call('EXISTS', rkey(rid)) == 0 then return redis.error_reply(ERR_NO_ROLLOUT .. ' ' .. rid) end
local ak = akey(rid, aid)
if redis.call('EXISTS', ak) == 0 then return redis.error_reply(ERR_NO_ATTEMPT .. ' ' .. rid .. ' ' .. aid) end
-- The lease check: the entry is still pending under the consumer (a reclaim or an end acks and deletes it).
-- A read, so that the first write below is one Redis refuses under maxmemory: a script that has written
-- once may go past the limit.
local pending = redis.pcall('XPENDING', Q, GROUP, entry, entry, 1)
if type(pending) ~= 'table' or pending.err or #pending == 0 or pending[1][2] ~= consumer then
  -- A client that lost the reply resends: this finish already ended the attempt (not someone else's end).
  local ended = redis.call('HMGET', ak, 'status', 'finished_by')
  if ended[1] == status and ended[2] == entry then return {2, 0, 0} end
  return {0, 0, 0}
end
local first_assigned = 0
if #assign > 0 then
  -- From the counter, as a reservation before the write would: an explicit id given with them keeps its
  -- place in the order (store_spans then raises the counter past it).
  local top = redis.call('INCRBY', P .. KEY_SEQUENCE .. rid, #assign) - #assign
  first_assigned = top + 1
  for k, s in ipairs(assign) do
    local seq = top + k
    s[4] = seq
    -- The placeholder's last 8 bytes are a msgpack uint64: write the id there, big-endian.
    local bytes = {}
    local n = seq
    for j = 8, 1, -1 do
      bytes[j] = string.char(n % 256)
      n = (n - n % 256) / 256
    end
    s[5] = string.sub(s[5], 1, -9) .. table.concat(bytes)
  end
end
local duplicates = 0
for _, fresh in ipairs(store_spans(items, true)) do duplicates = duplicates + 1 - fresh end
if ARGV[8] == '1' then redis.call('HSET', ak, 'metadata', ARGV[9]) end
redis.call('HSET', ak, 'finished_by', entry)
set_attempt_status(rid, aid, status)
return {1, first_assigned, duplicates}
