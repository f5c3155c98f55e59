-- add_spans.lua: store spans; each stored span is a heartbeat of its attempt and renews its lease.
-- ARGV[3..] per span, 5 slots: rollout id, attempt id, span id, sequence id, span (msgpack)
-- returns per span 1 (stored) or 0 (duplicate), or ERR_NO_ROLLOUT rid / ERR_NO_ATTEMPT rid aid
local items = {}
for i = 3, #ARGV, 5 do
  table.insert(items, {ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3]), ARGV[i + 4]})
end
-- Validate everything first: a script is not rolled back, so an error must come before any write.
local missing = missing_span_target(items)
if missing then return missing end
return store_spans(items, false)
