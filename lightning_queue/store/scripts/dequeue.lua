-- dequeue.lua: read unclaimed entries with XREADGROUP (no BLOCK) and claim up to `limit` of them.
-- The store API's dequeue holds no lease: its entries are deleted on claim (see claim_entry).
-- ARGV[3] consumer   ARGV[4] worker id ('' none)   ARGV[5] limit
-- ARGV[6] "1" to mark the worker idle when nothing is claimed   ARGV[7..] fresh attempt ids (limit of them)
-- returns {{rollout fields, attempt fields}, ...} in FIFO order
ensure_group()
local consumer, wid, limit = ARGV[3], ARGV[4], tonumber(ARGV[5])
local out = {}
local next_aid = 7
while #out < limit do
  local entries = stream_entries(redis.call('XREADGROUP', 'GROUP', GROUP, consumer, 'COUNT', limit - #out,
    'STREAMS', Q, '>'))
  if #entries == 0 then break end
  for _, e in ipairs(entries) do
    local rid = entry_field(e[2], 'rid')
    local claimed = nil
    if rid then claimed = claim_entry(e[1], rid, ARGV[next_aid], consumer, wid, false) end
    if claimed then
      table.insert(out, claimed)
      next_aid = next_aid + 1
    elseif not rid then
      redis.call('XACK', Q, GROUP, e[1])
      redis.call('XDEL', Q, e[1])
    end
  end
end
if #out == 0 and wid ~= '' and ARGV[6] == '1' then
  worker_idle(wid)
  redis.call('HSET', wkey(wid), 'last_dequeue_time', NOW)
end
return out
