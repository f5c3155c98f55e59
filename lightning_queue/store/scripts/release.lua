-- release.lua: a worker gives back an attempt it cannot finish (shutdown past its grace period).
-- The attempt ends `unresponsive`; its rollout is requeued whatever the retry rule says, since the
-- rollout did nothing wrong.
-- ARGV[3] rollout id   ARGV[4] attempt id   ARGV[5] metadata (msgpack, '' = leave)
-- returns 1 if released, 0 if the attempt had already ended or is unknown
local rid, aid = ARGV[3], ARGV[4]
local ak = akey(rid, aid)
if not LIVE_ATTEMPT[redis.call('HGET', ak, 'status')] then return 0 end
redis.call('HSET', ak, 'status', 'unresponsive')
if ARGV[5] ~= '' then redis.call('HSET', ak, 'metadata', ARGV[5]) end
release_entry(ak)
sync_worker(redis.call('HGET', ak, 'worker_id'), rid, aid, 'unresponsive')
if redis.call('HGET', rkey(rid), 'latest') == aid then set_rollout_status(rid, 'requeuing') end
return 1
