-- Record a delivery's outcome atomically: give back unused quota, add suppressions, count soft
-- bounces (suppressing those that reach the policy), reset the count of delivered addresses,
-- store pauses, and count bounces and complaints for the breaker (pausing the whole sender
-- when its rates cross the line).
-- KEYS[1]  suppression hash (address key -> JSON entry)
-- KEYS[2]  soft-bounce hash (address key -> "count first_epoch")
-- KEYS[3]  pause hash ("sender<TAB>recipient domain" or "sender<TAB>*" -> "until_epoch JSON")
-- KEYS[4]  today's quota counter of the sender domain
-- KEYS[5]  volume hash ("sender<TAB>bucket<TAB>s|b|c" -> count)
-- KEYS[6]  slow-down hash (shape field -> "factor since_epoch")
-- KEYS[7]  events seen (sorted set: "provider<TAB>event id" and "nonce<TAB>nonce", by when)
-- ARGV: now (epoch seconds, or "server" for the Redis server's clock), quota to give back,
--       soft threshold, soft span in seconds,
--       sender, breaker bucket width in seconds (0: no breaker), buckets in the window,
--       bounces, complaints, min volume, bounce pause rate, complaint pause rate,
--       "seconds JSON" of the pause if tripped,
--       seconds to remember an id, n, n ids (the provider event id, a request's nonce): when
--       any was seen before nothing is changed, and every one not seen before is remembered,
--       n, n pairs (address key, JSON entry)             suppressions; a listed address keeps its entry
--       n, n pairs (address key, JSON softbounce entry)  soft bounces
--       n, n address keys                                soft-bounce resets
--       n, n pairs (pause field, "seconds JSON")         pauses, for that long from now
--       recovery seconds, largest factor, n, n shape fields  slow-downs (each halves the rate)
-- Returns {added flags, one per suppression; address keys suppressed by soft-bounce escalation;
--          {sends, bounces, complaints in the window, 1 if this call paused the sender},
--          1 when an id was seen before and nothing was recorded}.
local now = tonumber(ARGV[1])
if ARGV[1] == 'server' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
-- A pause arrives as "seconds JSON" and is stored as "until_epoch JSON".
local function from_now(value)
  local space = string.find(value, ' ', 1, true)
  return (now + tonumber(string.sub(value, 1, space - 1))) .. string.sub(value, space)
end
local ids = tonumber(ARGV[15])
if ids > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', now - tonumber(ARGV[14]))
  local seen = false
  for j = 16, 15 + ids do
    seen = redis.call('ZADD', KEYS[7], 'NX', now, ARGV[j]) == 0 or seen
  end
  if seen then
    return {{}, {}, {0, 0, 0, 0}, 1}
  end
end
local back = tonumber(ARGV[2])
local threshold = tonumber(ARGV[3])
local span = tonumber(ARGV[4])
if back > 0 then
  local used = tonumber(redis.call('GET', KEYS[4]) or '0')
  if used > 0 then
    redis.call('SET', KEYS[4], math.max(0, used - back), 'KEEPTTL')
  end
end
local sender = ARGV[5]
local bucket_seconds = tonumber(ARGV[6])
local volume = {0, 0, 0, 0}
if bucket_seconds > 0 then
  local bucket = math.floor(now / bucket_seconds)
  local width = tonumber(ARGV[7])  -- buckets in the window
  local prefix = sender .. '\t'
  if tonumber(ARGV[8]) > 0 then
    redis.call('HINCRBY', KEYS[5], prefix .. bucket .. '\tb', tonumber(ARGV[8]))
  end
  if tonumber(ARGV[9]) > 0 then
    redis.call('HINCRBY', KEYS[5], prefix .. bucket .. '\tc', tonumber(ARGV[9]))
  end
  -- The bucket that just left the window goes.
  local gone = prefix .. (bucket - width) .. '\t'
  redis.call('HDEL', KEYS[5], gone .. 's', gone .. 'b', gone .. 'c')
  for b = bucket - width + 1, bucket do
    local counts = redis.call('HMGET', KEYS[5], prefix .. b .. '\ts', prefix .. b .. '\tb', prefix .. b .. '\tc')
    for k = 1, 3 do
      volume[k] = volume[k] + tonumber(counts[k] or '0')
    end
  end
  local sends = volume[1]
  if sends >= tonumber(ARGV[10]) and ARGV[13] ~= '' then
    local tripped = volume[2] >= tonumber(ARGV[11]) * sends or volume[3] >= tonumber(ARGV[12]) * sends
    local existing = redis.call('HGET', KEYS[3], prefix .. '*')
    local running = existing and tonumber(string.sub(existing, 1, string.find(existing, ' ', 1, true) - 1)) > now
    if tripped and not running then
      redis.call('HSET', KEYS[3], prefix .. '*', from_now(ARGV[13]))
      volume[4] = 1
    end
  end
end
local i = 16 + ids
local added = {}
local n = tonumber(ARGV[i])
for j = i + 1, i + 2 * n, 2 do
  added[#added + 1] = redis.call('HSETNX', KEYS[1], ARGV[j], ARGV[j + 1])
end
i = i + 2 * n + 1
local escalated = {}
n = tonumber(ARGV[i])
for j = i + 1, i + 2 * n, 2 do
  local key = ARGV[j]
  if redis.call('HEXISTS', KEYS[1], key) == 0 then
    local count, first = 1, now
    local record = redis.call('HGET', KEYS[2], key)
    if record then
      local space = string.find(record, ' ', 1, true)
      count = tonumber(string.sub(record, 1, space - 1)) + 1
      first = tonumber(string.sub(record, space + 1))
    end
    if count >= threshold and now - first >= span then
      redis.call('HSET', KEYS[1], key, ARGV[j + 1])
      redis.call('HDEL', KEYS[2], key)
      escalated[#escalated + 1] = key
    else
      redis.call('HSET', KEYS[2], key, count .. ' ' .. first)
    end
  end
end
i = i + 2 * n + 1
n = tonumber(ARGV[i])
for j = i + 1, i + n do
  redis.call('HDEL', KEYS[2], ARGV[j])
end
i = i + n + 1
n = tonumber(ARGV[i])
for j = i + 1, i + 2 * n, 2 do
  redis.call('HSET', KEYS[3], ARGV[j], from_now(ARGV[j + 1]))
end
i = i + 2 * n + 1
local recover = tonumber(ARGV[i])
local largest = tonumber(ARGV[i + 1])
n = tonumber(ARGV[i + 2])
for j = i + 3, i + 2 + n do
  local f = 1
  local record = redis.call('HGET', KEYS[6], ARGV[j])
  if record then
    local space = string.find(record, ' ', 1, true)
    f = tonumber(string.sub(record, 1, space - 1))
    f = f / math.pow(2, math.floor((now - tonumber(string.sub(record, space + 1))) / recover))
  end
  redis.call('HSET', KEYS[6], ARGV[j], math.min(largest, math.max(1, f) * 2) .. ' ' .. now)
end
return {added, escalated, volume, 0}
