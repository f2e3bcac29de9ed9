-- Record a delivery's outcome atomically, in MemoryStore.settle's order: a duplicate changes
-- nothing; else give back unused quota, add suppressions, count soft bounces (suppressing those
-- that reach the policy), reset the count of delivered addresses, store pauses, slow rates
-- down, and count bounces and complaints for the breaker (pausing the whole sender when its
-- rates cross the line and no pause of the whole sender is in force).
-- KEYS[1]  suppression hash (address key -> JSON entry)
-- KEYS[2]  soft-bounce hash (address key -> "count first_epoch")
-- KEYS[3]  pause hash ("sender<TAB>recipient domain" or "sender<TAB>*" -> "until_epoch JSON")
-- KEYS[4]  today's quota counter of the sender domain
-- KEYS[5]  volume hash ("sender<TAB>bucket<TAB>s|b|c" -> count)
-- KEYS[6]  slow-down hash (shape field -> "factor since_epoch")
-- KEYS[7]  events seen (sorted set: "provider<TAB>event id" and "nonce<TAB>nonce", by when)
-- ARGV: built by sendguard._store.redis.settle_args, which documents the layout; read here in the
-- same order, one section after the other.
-- Returns {added flags, one per suppression; address keys suppressed by soft-bounce escalation;
--          {sends, bounces, complaints in the window, 1 if this call paused the sender},
--          1 when an id was seen before and nothing was recorded}.
local i = 0
local function arg()
  i = i + 1
  return ARGV[i]
end
local function num()
  return tonumber(arg())
end

local now = arg()
if now == 'server' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
else
  now = tonumber(now)
end
-- A pause arrives as "seconds JSON" and is stored as "until_epoch JSON".
local function from_now(value)
  local space = string.find(value, ' ', 1, true)
  return (now + tonumber(string.sub(value, 1, space - 1))) .. string.sub(value, space)
end
local function until_of(stored)
  return tonumber(string.sub(stored, 1, string.find(stored, ' ', 1, true) - 1))
end

-- Event ids: any seen before makes this a duplicate; every one not seen is remembered.
local remember = num()
local n = num()
if n > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', now - remember)
  local seen = false
  for _ = 1, n do
    seen = redis.call('ZADD', KEYS[7], 'NX', now, arg()) == 0 or seen
  end
  if seen then
    return {{}, {}, {0, 0, 0, 0}, 1}
  end
end

-- Quota to give back.
local back = num()
if back > 0 then
  local used = tonumber(redis.call('GET', KEYS[4]) or '0')
  if used > 0 then
    redis.call('SET', KEYS[4], math.max(0, used - back), 'KEEPTTL')
  end
end

-- Suppressions: a listed address keeps its entry.
local added = {}
n = num()
for _ = 1, n do
  local key = arg()
  added[#added + 1] = redis.call('HSETNX', KEYS[1], key, arg())
end

-- Soft bounces.
local threshold = num()
local span = num()
local escalated = {}
n = num()
for _ = 1, n do
  local key = arg()
  local entry = arg()
  if redis.call('HEXISTS', KEYS[1], key) == 0 then
    local count, first = 1, now
    local record = redis.call('HGET', KEYS[2], key)
    if record then
      local space = string.find(record, ' ', 1, true)
      count = tonumber(string.sub(record, 1, space - 1)) + 1
      first = tonumber(string.sub(record, space + 1))
    end
    if count >= threshold and now - first >= span then
      redis.call('HSET', KEYS[1], key, entry)
      redis.call('HDEL', KEYS[2], key)
      escalated[#escalated + 1] = key
    else
      redis.call('HSET', KEYS[2], key, count .. ' ' .. first)
    end
  end
end

-- Soft-bounce resets.
n = num()
for _ = 1, n do
  redis.call('HDEL', KEYS[2], arg())
end

-- Pauses, for that long from now.
n = num()
for _ = 1, n do
  local field = arg()
  redis.call('HSET', KEYS[3], field, from_now(arg()))
end

-- Slow-downs: each halves its rate (doubles the factor, up to the largest).
local recover = num()
local largest = num()
n = num()
for _ = 1, n do
  local field = arg()
  local f = 1
  local record = redis.call('HGET', KEYS[6], field)
  if record then
    local space = string.find(record, ' ', 1, true)
    f = tonumber(string.sub(record, 1, space - 1))
    f = f / math.pow(2, math.floor((now - tonumber(string.sub(record, space + 1))) / recover))
  end
  redis.call('HSET', KEYS[6], field, math.min(largest, math.max(1, f) * 2) .. ' ' .. now)
end

-- The breaker: count, drop the bucket that left the window, sum the window, maybe trip.
local sender = arg()
local bucket_seconds = num()
local width = num()  -- buckets in the window
local bounces = num()
local complaints = num()
local min_volume = num()
local bounce_ppm = num()
local complaint_ppm = num()
local trip = arg()
local volume = {0, 0, 0, 0}
if bucket_seconds > 0 then
  local bucket = math.floor(now / bucket_seconds)
  local prefix = sender .. '\t'
  if bounces > 0 then
    redis.call('HINCRBY', KEYS[5], prefix .. bucket .. '\tb', bounces)
  end
  if complaints > 0 then
    redis.call('HINCRBY', KEYS[5], prefix .. bucket .. '\tc', complaints)
  end
  local gone = prefix .. (bucket - width) .. '\t'
  redis.call('HDEL', KEYS[5], gone .. 's', gone .. 'b', gone .. 'c')
  for b = bucket - width + 1, bucket do
    local counts = redis.call('HMGET', KEYS[5], prefix .. b .. '\ts', prefix .. b .. '\tb', prefix .. b .. '\tc')
    for k = 1, 3 do
      volume[k] = volume[k] + tonumber(counts[k] or '0')
    end
  end
  -- Breaker.trips, in the same integers: rates as whole parts per million.
  local sends = volume[1]
  local tripped = sends >= min_volume and (
    volume[2] * 1000000 >= bounce_ppm * sends or volume[3] * 1000000 >= complaint_ppm * sends)
  if tripped then
    local existing = redis.call('HGET', KEYS[3], prefix .. '*')
    if existing and until_of(existing) <= now then
      redis.call('HDEL', KEYS[3], prefix .. '*')
      existing = false
    end
    if not existing then
      redis.call('HSET', KEYS[3], prefix .. '*', from_now(trip))
      volume[4] = 1
    end
  end
end
return {added, escalated, volume, 0}
