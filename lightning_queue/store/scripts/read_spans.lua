-- read_spans.lua: a page of a trace in sequence order in one round trip, when one order index holds it.
-- ARGV[3] rollout id   ARGV[4] attempt id, 'latest', or '' (all attempts)   ARGV[5] offset
-- ARGV[6] limit (-1: all)   ARGV[7] the most spans to return (a longer page is read in chunks instead)
-- returns {'ok', total, span id 1, span 1 (nil if missing), ...}; {'none'} when 'latest' names no attempt;
-- {'slow'} when this read cannot answer: several attempts hold spans (their order indexes must be merged),
-- the trace predates the order indexes (not all of it is in them), or the page is over ARGV[7]
local rid, want = ARGV[3], ARGV[4]
local offset, limit, most = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local rk = rkey(rid)
if want == 'latest' then
  want = redis.call('HGET', rk, 'latest')
  if not want then return {'none'} end
end
local indexed, holder = 0, nil
for _, aid in ipairs(redis.call('ZRANGE', P .. KEY_ATTEMPTS .. rid, 0, -1)) do
  local n = redis.call('ZCARD', P .. KEY_SPAN_ORDER .. rid .. ':' .. aid)
  if n > 0 and (want == '' or want == aid) then
    if holder then return {'slow'} end
    holder = aid
  end
  indexed = indexed + n
end
if indexed ~= redis.call('HLEN', P .. KEY_SPANS .. rid) then return {'slow'} end
if not holder then return {'ok', 0} end
local order = P .. KEY_SPAN_ORDER .. rid .. ':' .. holder
local total = redis.call('ZCARD', order)
local stop = total - 1
if limit >= 0 then stop = math.min(stop, offset + limit - 1) end
if stop - offset + 1 > most then return {'slow'} end
local out = {'ok', total}
if stop < offset then return out end
local sids = redis.call('ZRANGE', order, offset, stop)
local fields = {}
for k, sid in ipairs(sids) do fields[k] = holder .. ':' .. sid end
local blobs = redis.call('HMGET', P .. KEY_SPANS .. rid, unpack(fields))
for k, sid in ipairs(sids) do
  out[2 * k + 1] = holder .. ':' .. sid
  out[2 * k + 2] = blobs[k]
end
return out
