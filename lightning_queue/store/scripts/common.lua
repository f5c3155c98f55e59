-- common.lua: helpers prepended to every script (after the prelude generated from schema.py, which
-- defines the KEY_*, GROUP, DONE_MAXLEN, ERR_* constants and the status sets, and of embedded.py's
-- `stream_entries`, which reads an XREADGROUP reply). Every script gets
--   KEYS[1] the namespace's queue stream (routes the call to the namespace's slot)
--   ARGV[1] the key prefix "lq:{<ns>}:"   ARGV[2] now (float seconds, the caller's clock)
-- Keys derived below all carry the namespace hash tag, so a script never leaves its slot.
-- Each script's ARGV[3..] is packed by its one method in transitions.py; change both together.
local P = ARGV[1]
local NOW = ARGV[2]
local Q = KEYS[1]

local function rkey(rid) return P .. KEY_ROLLOUT .. rid end
local function akey(rid, aid) return P .. KEY_ATTEMPT .. rid .. ':' .. aid end
local function wkey(wid) return P .. KEY_WORKER .. wid end

local function ensure_group()
  local ok = pcall(redis.call, 'XGROUP', 'CREATE', Q, GROUP, '0', 'MKSTREAM')
  return ok
end

-- Entries hold ids only; the rollout remembers its one unclaimed entry so a requeue never doubles it.
local function push_queue(rid)
  local rk = rkey(rid)
  if redis.call('HEXISTS', rk, 'qentry') == 1 then return end
  local id = redis.call('XADD', Q, '*', 'rid', rid)
  redis.call('HSET', rk, 'qentry', id)
end

-- Wake the workers waiting on the gate stream (they XREAD BLOCK on it while claims are gated).
local function wake_gate(kind, value)
  redis.call('XADD', P .. KEY_GATE, 'MAXLEN', '~', GATE_MAXLEN, '*', 'kind', kind, 'value', value)
end

-- Under a staleness bound, a rollout that ends without a usable result gives its slot back, once (its
-- retries never took another); a slot of an earlier bound (another `gen`) is not this bound's to give.
local function give_back_slot(rid)
  local rk = rkey(rid)
  local gen = redis.call('HGET', rk, 'adm_gen')
  if not gen then return end
  redis.call('HDEL', rk, 'adm_gen')
  if redis.call('HGET', P .. KEY_STALENESS, 'gen') == gen then
    redis.call('HINCRBY', P .. KEY_STALENESS, 'admitted', -1)
    wake_gate('slot', rid)
  end
end

local function set_rollout_status(rid, new)
  local rk = rkey(rid)
  local old = redis.call('HGET', rk, 'status')
  if old == new then return end
  local score = redis.call('HGET', rk, 'start_time')
  if old then
    redis.call('ZREM', P .. KEY_STATUS_INDEX .. old, rid)
    if TERMINAL[old] then redis.call('ZREM', P .. KEY_END_INDEX .. old, rid) end
  end
  redis.call('ZADD', P .. KEY_STATUS_INDEX .. new, score, rid)
  redis.call('HSET', rk, 'status', new)
  if TERMINAL[new] then
    redis.call('HSET', rk, 'end_time', NOW)
    -- The end_time indexes move with the field (a rollout keeps its end_time if it is requeued).
    redis.call('ZREM', P .. KEY_OPEN_INDEX, rid)
    redis.call('ZADD', P .. KEY_ENDED_INDEX, NOW, rid)
    redis.call('ZADD', P .. KEY_END_INDEX .. new, NOW, rid)
    redis.call('XADD', P .. KEY_DONE, 'MAXLEN', '~', DONE_MAXLEN, '*', 'rid', rid, 'status', new)
    if new ~= 'succeeded' then give_back_slot(rid) end
  end
  if QUEUED[new] then push_queue(rid) end
end

-- The mode index follows the `mode` field; call after any write of it.
local function index_mode(rid, old)
  local rk = rkey(rid)
  local new = redis.call('HGET', rk, 'mode') or NO_MODE
  if old == new then return end
  if old then redis.call('ZREM', P .. KEY_MODE_INDEX .. old, rid) end
  redis.call('ZADD', P .. KEY_MODE_INDEX .. new, redis.call('HGET', rk, 'start_time'), rid)
end

local function touch_worker(wid)
  local wk = wkey(wid)
  if redis.call('EXISTS', wk) == 0 then
    redis.call('HSET', wk, 'worker_id', wid, 'status', 'unknown')
    redis.call('ZADD', P .. KEY_WORKERS_INDEX, NOW, wid)
  end
  return wk
end

local function worker_busy(wid, rid, aid)
  local wk = touch_worker(wid)
  redis.call('HSET', wk, 'status', 'busy', 'current_rollout_id', rid, 'current_attempt_id', aid,
    'last_busy_time', NOW)
end

local function worker_idle(wid)
  local wk = touch_worker(wid)
  redis.call('HSET', wk, 'status', 'idle', 'last_idle_time', NOW)
  redis.call('HDEL', wk, 'current_rollout_id', 'current_attempt_id')
end

local function worker_unknown(wid)
  local wk = touch_worker(wid)
  redis.call('HSET', wk, 'status', 'unknown')
  redis.call('HDEL', wk, 'current_rollout_id', 'current_attempt_id')
end

-- The v0.3 worker rule for an attempt's status. A worker running several attempts is busy with the one
-- it claimed last: another of them ending leaves it busy.
local function sync_worker(wid, rid, aid, astatus)
  if not wid or wid == '' then return end
  if astatus == 'succeeded' or astatus == 'failed' then
    local current = redis.call('HMGET', wkey(wid), 'current_rollout_id', 'current_attempt_id')
    if not current[2] or (current[1] == rid and current[2] == aid) then worker_idle(wid) end
  elseif astatus == 'timeout' or astatus == 'unresponsive' then worker_unknown(wid)
  else worker_busy(wid, rid, aid) end
end

-- The policy version an attempt of `rid` runs under: its pinned resources' (the pin follows updates of
-- that id), else the namespace's latest (the counter: one GET, not an index lookup per claim); nil when
-- there are none (or they predate policy versions).
local function rollout_policy_version(rid)
  local res = redis.call('HGET', rkey(rid), 'resources_id')
  if not res then return redis.call('GET', P .. KEY_POLICY_VERSION) end
  return redis.call('HGET', P .. KEY_RESOURCES .. res, 'policy_version')
end

local function new_attempt(rid, aid, wid, entry, consumer)
  local rk = rkey(rid)
  local n = redis.call('HINCRBY', rk, 'nattempts', 1)
  local ak = akey(rid, aid)
  redis.call('HSET', ak, 'rollout_id', rid, 'attempt_id', aid, 'sequence_id', n, 'start_time', NOW,
    'status', 'preparing')
  local pv = rollout_policy_version(rid)
  if pv then redis.call('HSET', ak, 'policy_version', pv) end
  if wid ~= '' then redis.call('HSET', ak, 'worker_id', wid) end
  -- `leased` outlives the entry: it tells a late span that this attempt's liveness was its lease.
  if entry ~= '' then redis.call('HSET', ak, 'entry', entry, 'consumer', consumer, 'leased', '1') end
  redis.call('ZADD', P .. KEY_ATTEMPTS .. rid, n, aid)
  redis.call('HSET', rk, 'latest', aid)
  redis.call('HINCRBY', P .. KEY_META, 'attempts', 1)
  if wid ~= '' then worker_busy(wid, rid, aid) end
  return ak
end

-- The retry rule: failed/timeout/unresponsive requeue while allowed, else fail the rollout.
local function rollout_status_for(rid, aid, astatus)
  if astatus == 'failed' or astatus == 'timeout' or astatus == 'unresponsive' then
    local rk = rkey(rid)
    local retry = redis.call('HGET', rk, 'cfg_retry') or ''
    local max_attempts = tonumber(redis.call('HGET', rk, 'cfg_max') or '1')
    local seq = tonumber(redis.call('HGET', akey(rid, aid), 'sequence_id'))
    if string.find(retry, ',' .. astatus .. ',', 1, true) and seq < max_attempts then
      return 'requeuing'
    end
    return 'failed'
  end
  return astatus
end

-- An ended attempt no longer needs its stream entry; XACK alone would keep it in the stream forever.
local function release_entry(ak)
  local entry = redis.call('HGET', ak, 'entry')
  if entry then
    redis.call('XACK', Q, GROUP, entry)
    redis.call('XDEL', Q, entry)
    redis.call('HDEL', ak, 'entry', 'consumer')
  end
end

local function set_attempt_status(rid, aid, astatus)
  local ak = akey(rid, aid)
  redis.call('HSET', ak, 'status', astatus)
  if astatus == 'succeeded' or astatus == 'failed' then redis.call('HSET', ak, 'end_time', NOW) end
  if not LIVE_ATTEMPT[astatus] then release_entry(ak) end
  sync_worker(redis.call('HGET', ak, 'worker_id'), rid, aid, astatus)
  -- Fencing: only the latest attempt may move its rollout.
  if redis.call('HGET', rkey(rid), 'latest') == aid then
    local rs = rollout_status_for(rid, aid, astatus)
    if rs ~= redis.call('HGET', rkey(rid), 'status') then set_rollout_status(rid, rs) end
  end
end

-- Spans (add_spans.lua, finish.lua). Each item is {rid, aid, span id, sequence id (number), blob}.
-- The error reply for the first item whose rollout or attempt is missing, or nil: check before writing.
local function missing_span_target(items)
  local checked = {}
  for _, s in ipairs(items) do
    local pair = s[1] .. '\0' .. s[2]
    if not checked[pair] then
      if redis.call('EXISTS', rkey(s[1])) == 0 then return redis.error_reply(ERR_NO_ROLLOUT .. ' ' .. s[1]) end
      if redis.call('EXISTS', akey(s[1], s[2])) == 0 then
        return redis.error_reply(ERR_NO_ATTEMPT .. ' ' .. s[1] .. ' ' .. s[2])
      end
      checked[pair] = true
    end
  end
  return nil
end

-- A stored span moves its attempt, and its rollout when the attempt is the latest, to running (rules inside).
local function promote_on_span(rid, aid)
  local ak = akey(rid, aid)
  local a = redis.call('HMGET', ak, 'status', 'entry', 'consumer', 'leased')
  local astatus, entry, leased = a[1], a[2], a[4] == '1'
  -- A leased attempt that left preparing/running lost its lease with it (reclaimed, released, ended),
  -- and its worker gives up an attempt whose lease it lost: reviving it would leave a running attempt
  -- nobody ends or renews. So its late spans are kept and beat its heartbeat, but move nothing.
  -- Attempts without a lease keep the contract's revival (their liveness is `unresponsive_seconds`).
  if astatus == 'preparing' or (astatus == 'unresponsive' and not leased) then
    astatus = 'running'
    redis.call('HSET', ak, 'status', astatus)
  end
  if entry then redis.call('XCLAIM', Q, GROUP, a[3], 0, entry, 'JUSTID') end
  local rk = rkey(rid)
  if redis.call('HGET', rk, 'latest') == aid and (LIVE_ATTEMPT[astatus] or not leased) then
    local rs = redis.call('HGET', rk, 'status')
    if rs == 'preparing' or rs == 'requeuing' then set_rollout_status(rid, 'running') end
  end
end

-- Store the items; per item 1 (stored) or 0 (a duplicate). Each stored span is a heartbeat of its attempt
-- and renews its lease, and may move it (and its rollout) to running; with `ending` (the attempt ends in
-- the same script) only the heartbeat is kept: its end decides where it goes.
local function store_spans(items, ending)
  local out = {}
  local touched = {}
  local top_seq = {}
  local stored = 0
  for _, s in ipairs(items) do
    local rid, aid, sid, seq = s[1], s[2], s[3], s[4]
    if redis.call('HSETNX', P .. KEY_SPANS .. rid, aid .. ':' .. sid, s[5]) == 0 then
      table.insert(out, 0)
    else
      table.insert(out, 1)
      redis.call('ZADD', P .. KEY_SPAN_ORDER .. rid .. ':' .. aid, seq, sid)
      if seq > (top_seq[rid] or 0) then top_seq[rid] = seq end
      stored = stored + 1
      touched[rid .. '\0' .. aid] = {rid, aid}
    end
  end
  -- Once per rollout, not per span: raise the sequence counter to the highest explicit id.
  for rid, seq in pairs(top_seq) do
    local sk = P .. KEY_SEQUENCE .. rid
    if seq > tonumber(redis.call('GET', sk) or '0') then redis.call('SET', sk, seq) end
  end
  if stored > 0 then redis.call('HINCRBY', P .. KEY_META, 'spans', stored) end
  for _, pair in pairs(touched) do
    redis.call('HSET', akey(pair[1], pair[2]), 'last_heartbeat_time', NOW)
    if not ending then promote_on_span(pair[1], pair[2]) end
  end
  return out
end

-- The claim gate (issue 17). A claim call builds one gate: the staleness bound, if any, and the policy
-- version, read once; `full` turns true once a bounded rollout found no slot; `failed` lists the rollouts
-- failed as stale. `paused` is the claims pause (and the holder of a pause found expired, reported once).
local function claims_paused()
  if redis.call('EXISTS', P .. KEY_PAUSE) == 1 then return true, '' end
  local expired = redis.call('GET', P .. KEY_PAUSE_HOLDER)
  if expired then
    redis.call('DEL', P .. KEY_PAUSE_HOLDER)
    return false, expired
  end
  return false, ''
end

local function staleness_bound()
  local f = redis.call('HMGET', P .. KEY_STALENESS, 'max_staleness', 'batch_size', 'modes', 'policy', 'base', 'gen',
    'admitted')
  if not f[1] then return nil end
  return {S = tonumber(f[1]), B = tonumber(f[2]), modes = f[3], policy = f[4], base = tonumber(f[5]), gen = f[6],
    admitted = tonumber(f[7] or '0')}
end

local function new_gate()
  local paused, expired = claims_paused()
  return {paused = paused, expired = expired, bound = staleness_bound(),
    version = tonumber(redis.call('GET', P .. KEY_POLICY_VERSION) or '0'), full = false, failed = {}}
end

-- AReaL's count rule: at policy version v, at most (S + (v - base) + 1) * B rollouts of the bounded modes
-- admitted since the bound was set (a rollout counts once; one that ends without a usable result gives
-- its slot back). The n-th admitted rollout is consumed by training step ceil(n / B) - 1 (counted from
-- `base`), so one admitted at version v is at most S versions old when it is trained on.
local function admission_cap(b, version) return (b.S + (version - b.base) + 1) * b.B end

local function bounded(rid, b)
  local mode = redis.call('HGET', rkey(rid), 'mode') or NO_MODE
  return string.find(b.modes, ',' .. mode .. ',', 1, true) ~= nil
end

-- The gate's verdict on claiming queued rollout `rid` now: 'ok', 'full' (no slot: its entry is held) or
-- 'stale' (pinned more than S versions behind, under the "fail" policy; "repin" moves it to the latest).
local function admit(rid, g)
  local b = g.bound
  if not b or not bounded(rid, b) then return 'ok' end
  local rk = rkey(rid)
  local res = redis.call('HGET', rk, 'resources_id')
  local pv = res and tonumber(redis.call('HGET', P .. KEY_RESOURCES .. res, 'policy_version') or '')
  if pv and pv < g.version - b.S then
    if b.policy == 'fail' then return 'stale' end
    local latest = redis.call('ZREVRANGE', P .. KEY_RESOURCES_INDEX, 0, 0)[1]
    redis.call('HSET', rk, 'resources_id', latest, 'repinned_from', res)
  end
  if redis.call('HGET', rk, 'adm_gen') == b.gen then return 'ok' end
  if b.admitted >= admission_cap(b, g.version) then return 'full' end
  b.admitted = redis.call('HINCRBY', P .. KEY_STALENESS, 'admitted', 1)
  redis.call('HSET', rk, 'adm_gen', b.gen)
  g.admitted = b.admitted
  return 'ok'
end

-- A refused entry stays pending, under the held consumer, and its rollout stays queued: nothing is lost.
local function hold_entry(entry, rid)
  if #redis.call('XCLAIM', Q, GROUP, HELD_CONSUMER, 0, entry, 'JUSTID') > 0 then
    redis.call('HSET', rkey(rid), 'held', '1')
  end
end

-- Turn one stream entry into attempt k+1, or drop it if its rollout left the queue meanwhile; the gate
-- `g` may hold it instead (no slot) or fail its rollout (stale). Returns the claimed pair, or nil.
-- With `leased` the entry stays pending under `consumer` until the attempt ends (workers renew it);
-- without, it is deleted now and the attempt's liveness rests on spans, as in the v0.3 contract.
local function claim_entry(entry, rid, aid, consumer, wid, leased, g)
  -- A worker frozen between its XREADGROUP and this script may find its entry reclaimed meanwhile (the
  -- rollout queued afresh): an attempt on that entry would hold a lease nobody can lose. XCLAIM answers
  -- only for entries still pending, and restarts the lease clock of those.
  if leased and #redis.call('XCLAIM', Q, GROUP, consumer, 0, entry, 'JUSTID') == 0 then return nil end
  local rk = rkey(rid)
  -- The same claim again: the client resent it after losing the reply (redis-py retries on a dropped
  -- connection). Attempt ids are fresh per read, so this attempt on this entry is the one it made;
  -- dropping the entry as "no longer queued" would leave that attempt leased on an entry nobody holds.
  if leased and redis.call('HGET', rk, 'latest') == aid and redis.call('HGET', akey(rid, aid), 'entry') == entry then
    return {redis.call('HGETALL', rk), redis.call('HGETALL', akey(rid, aid))}
  end
  local status = redis.call('HGET', rk, 'status')
  local queued_here = redis.call('HGET', rk, 'qentry') == entry
  if not status or not QUEUED[status] then
    if queued_here then redis.call('HDEL', rk, 'qentry', 'held') end
    redis.call('XACK', Q, GROUP, entry)
    redis.call('XDEL', Q, entry)
    return nil
  end
  local verdict = admit(rid, g)
  if verdict == 'full' then
    g.full = true
    hold_entry(entry, rid)
    return nil
  end
  if queued_here then redis.call('HDEL', rk, 'qentry', 'held') end
  if verdict == 'stale' then
    redis.call('XACK', Q, GROUP, entry)
    redis.call('XDEL', Q, entry)
    set_rollout_status(rid, 'failed')
    table.insert(g.failed, rid)
    return nil
  end
  local ak
  if leased then
    ak = new_attempt(rid, aid, wid, entry, consumer)
  else
    ak = new_attempt(rid, aid, wid, '', '')
    redis.call('XACK', Q, GROUP, entry)
    redis.call('XDEL', Q, entry)
  end
  if g.admitted then
    -- The audit of the count rule: the count this admission made, at which version.
    redis.call('HSET', ak, 'admitted_count', g.admitted, 'admitted_at_version', g.version)
    g.admitted = nil
  end
  set_rollout_status(rid, 'preparing')
  if wid ~= '' then redis.call('HSET', wkey(wid), 'last_dequeue_time', NOW) end
  return {redis.call('HGETALL', rk), redis.call('HGETALL', ak)}
end

local function entry_field(fields, name)
  if not fields then return nil end
  for i = 1, #fields, 2 do
    if fields[i] == name then return fields[i + 1] end
  end
  return nil
end

-- The oldest `count` held entries; none when the stream or its group is gone (Redis restarted empty).
local function held_entries(count)
  local held = redis.pcall('XPENDING', Q, GROUP, '-', '+', count, HELD_CONSUMER)
  if type(held) == 'table' and held.err then return {} end
  return held
end

-- Claim held entries first, oldest first (they were read before anything still unread), into `out`
-- until it has `want`; the k-th claim in `out` takes the fresh attempt id ARGV[first_aid + k - 1]. Once
-- the bound is full, held rollouts of bounded modes are passed over; those of other modes may still go.
-- Returns how many held entries it saw (HELD_SCAN: maybe more).
local function serve_held(g, consumer, wid, leased, want, first_aid, out)
  if g.paused or #out >= want then return 0 end
  local held = held_entries(HELD_SCAN)
  for _, p in ipairs(held) do
    if #out >= want then break end
    local entry = p[1]
    local e = redis.call('XRANGE', Q, entry, entry)[1]
    local rid = e and entry_field(e[2], 'rid')
    if not rid then
      redis.call('XACK', Q, GROUP, entry)
      redis.call('XDEL', Q, entry)
    elseif not (g.full and g.bound and bounded(rid, g.bound)) then
      local claimed = claim_entry(entry, rid, ARGV[first_aid + #out], consumer, wid, leased, g)
      if claimed then table.insert(out, claimed) end
    end
  end
  return #held
end

-- The resources snapshot an attempt of `rid` runs with: its pinned one, else the latest (looked up once per
-- call, in `latest`), as {id, version, update_time}: a worker that holds that version reads nothing.
local function resources_ref(rid, latest)
  local id = redis.call('HGET', rkey(rid), 'resources_id')
  if not id then
    if latest.id == nil then latest.id = redis.call('ZREVRANGE', P .. KEY_RESOURCES_INDEX, 0, 0)[1] or '' end
    id = latest.id
  end
  if id == '' then return {'', '', ''} end
  local f = redis.call('HMGET', P .. KEY_RESOURCES .. id, 'version', 'update_time')
  return {id, f[1] or '', f[2] or ''}
end

-- What a claim call tells its caller about the gate: '' open, 'paused', 'full' (the bound has no slot for
-- a rollout waiting), 'held' (open, but held entries wait: serve them before reading the queue).
local function gate_reply(g, out)
  local state = ''
  if g.paused then state = 'paused'
  elseif g.full then state = 'full'
  elseif #held_entries(1) > 0 then state = 'held' end
  local last = '0-0'
  if state ~= '' then
    local newest = redis.call('XREVRANGE', P .. KEY_GATE, '+', '-', 'COUNT', 1)[1]
    if newest then last = newest[1] end
  end
  return {out, state, last, g.expired, g.failed}
end
