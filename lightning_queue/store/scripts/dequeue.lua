-- dequeue.lua: claim up to `limit` entries through the claim gate: held entries first, then unread ones
-- (XREADGROUP, no BLOCK). Nothing is read while claims are paused. Under a full staleness bound a call
-- reads on until one rollout of a bounded mode is refused (it is held), so rollouts of other modes behind
-- it still go; once HELD_SCAN entries are held it reads nothing, so polling never drains the queue into
-- held entries.
-- The store API's dequeue holds no lease: its entries are deleted on claim (see claim_entry).
-- ARGV[3] consumer   ARGV[4] worker id ('' none)   ARGV[5] limit
-- ARGV[6] "1" to mark the worker idle when nothing is claimed   ARGV[7..] fresh attempt ids (limit of them)
-- returns as claim.lua (gate_reply), claims in FIFO order
ensure_group()
local consumer, wid, limit = ARGV[3], ARGV[4], tonumber(ARGV[5])
local g = new_gate()
local out = {}
local seen = serve_held(g, consumer, wid, false, limit, 7, out)
local full_before = g.full
g.full = false
while not g.paused and not g.full and not (full_before and seen >= HELD_SCAN) and #out < limit do
  local entries = stream_entries(redis.call('XREADGROUP', 'GROUP', GROUP, consumer, 'COUNT', limit - #out,
    'STREAMS', Q, '>'))
  if #entries == 0 then break end
  for _, e in ipairs(entries) do
    local rid = entry_field(e[2], 'rid')
    if not rid then
      redis.call('XACK', Q, GROUP, e[1])
      redis.call('XDEL', Q, e[1])
    elseif #out >= limit then
      hold_entry(e[1], rid)
    else
      local claimed = claim_entry(e[1], rid, ARGV[7 + #out], consumer, wid, false, g)
      if claimed then table.insert(out, claimed) end
    end
  end
end
g.full = g.full or full_before
if #out == 0 and wid ~= '' and ARGV[6] == '1' then
  worker_idle(wid)
  redis.call('HSET', wkey(wid), 'last_dequeue_time', NOW)
end
return gate_reply(g, out)
