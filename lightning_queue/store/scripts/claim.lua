-- claim.lua: claim entries a worker already read with a blocking XREADGROUP.
-- ARGV[3] consumer   ARGV[4] worker id ('' none)   ARGV[5..] triples: entry id, rollout id, fresh attempt id
-- returns {{rollout fields, attempt fields}, ...} for the entries whose rollout was still queued
local consumer, wid = ARGV[3], ARGV[4]
local out = {}
for i = 5, #ARGV, 3 do
  local claimed = claim_entry(ARGV[i], ARGV[i + 1], ARGV[i + 2], consumer, wid, true)
  if claimed then table.insert(out, claimed) end
end
return out
