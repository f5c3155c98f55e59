-- claim.lua: claim entries a worker already read with a blocking XREADGROUP, through the claim gate.
-- Held entries go first (they are older); read entries beyond `want` claims, or refused by the gate
-- (claims paused, no slot under the staleness bound), are held, never lost. With no read entries the call
-- only serves held ones (what a gated worker does when it wakes).
-- ARGV[3] consumer   ARGV[4] worker id ('' none)   ARGV[5] want (at most this many claims)
-- ARGV[6] n, then n fresh attempt ids for held entries   then triples: entry id, rollout id, fresh attempt id
-- returns {claims, gate state, gate stream id to wait after, expired pause holder or '', rollouts failed as stale,
--   resources} (see gate_reply in common.lua); each claim is {rollout fields, attempt fields}, and `resources`
--   names per claim the snapshot it runs with as of now: {resources id, version, update_time}, the id alone
--   for a pinned snapshot that does not exist, {'', '', ''} when there is none (see resources_ref)
local consumer, wid, want, spare = ARGV[3], ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local g = new_gate()
local out = {}
serve_held(g, consumer, wid, true, math.min(want, spare), 7, out)
for i = 7 + spare, #ARGV, 3 do
  local entry, rid = ARGV[i], ARGV[i + 1]
  if g.paused or #out >= want then
    hold_entry(entry, rid)
  else
    local claimed = claim_entry(entry, rid, ARGV[i + 2], consumer, wid, true, g)
    if claimed then table.insert(out, claimed) end
  end
end
local reply = gate_reply(g, out)
local refs = {}
local latest = {}
for k, pair in ipairs(out) do refs[k] = resources_ref(entry_field(pair[1], 'rollout_id'), latest) end
table.insert(reply, refs)
return reply
