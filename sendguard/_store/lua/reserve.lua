-- Admit recipients of one or more messages at once (concurrent sends of a process share a call):
-- check each against the suppression list and the sender's pauses, hold it to the sender's
-- rates (GCRA per sender × provider, and the day's warmup cap spread over the day), take
-- warmup quota, and count the sends for the breaker, atomically.
-- KEYS[1]   suppression hash (address key -> JSON entry)
-- KEYS[2]   soft-bounce hash (address key -> "count first_epoch")
-- KEYS[3]   pause hash ("sender<TAB>recipient domain" or "sender<TAB>*" -> "until_epoch JSON")
-- KEYS[4]   volume hash ("sender<TAB>bucket<TAB>s|b|c" -> count)
-- KEYS[5]   rate hash (shape field -> theoretical arrival time, epoch seconds)
-- KEYS[6]   slow-down hash (shape field -> "factor since_epoch")
-- KEYS[7]   ramp hash (sender -> "sending day, last day sent on") for ramps of sending days
-- KEYS[8…]  quota counters (one per sender domain and UTC day) named by the groups below
-- ARGV: built by sendguard._store.redis.reserve_args, which documents the layout; read here in the
-- same order (two values, then one group per message).
-- Returns one item per address, groups in order: {0, entry} suppressed, {3, pause} paused,
-- {2, retry} held back (retry: epoch seconds as text, "" for the daily cap), where a pause is
-- its stored "until_epoch JSON",
-- {1, soft} clear (soft = 1 when soft bounces are on record).
local ttl = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
if ARGV[2] == 'server' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local today = math.floor(now / 86400)
local used = {}
local taken = {}
local out = {}
local tats = {}
local changed = {}
-- Most of the time nothing is paused, slowed or soft-bounced: skip those lookups then.
local pauses = redis.call('EXISTS', KEYS[3]) == 1
local softs = redis.call('EXISTS', KEYS[2]) == 1
local slows = redis.call('EXISTS', KEYS[6]) == 1

local function paused(field)
  local pause = redis.call('HGET', KEYS[3], field)
  if not pause then
    return false
  end
  local space = string.find(pause, ' ', 1, true)
  if tonumber(string.sub(pause, 1, space - 1)) <= now then
    redis.call('HDEL', KEYS[3], field)
    return false
  end
  return pause
end

local function factor(field, recover)
  if not slows then
    return 1
  end
  local record = redis.call('HGET', KEYS[6], field)
  if not record then
    return 1
  end
  local space = string.find(record, ' ', 1, true)
  local f = tonumber(string.sub(record, 1, space - 1))
  local since = tonumber(string.sub(record, space + 1))
  f = f / math.pow(2, math.floor((now - since) / recover))
  if f <= 1 then
    redis.call('HDEL', KEYS[6], field)
    return 1
  end
  return f
end

-- Times go back to Python and into the rate hash with every digit of the double ('%.17g'):
-- tostring keeps 14, which rounded a theoretical arrival time such as now + 0.6 + 0.6 and let a
-- send through that MemoryStore (holding the exact double) throttles.
local function exact(x)
  return string.format('%.17g', x)
end

local function tat(field)
  if tats[field] == nil then
    tats[field] = tonumber(redis.call('HGET', KEYS[5], field) or '0')
  end
  return math.max(tats[field], now)
end

local i = 3
while i <= #ARGV do
  local counter = tonumber(ARGV[i])
  local cap = tonumber(ARGV[i + 1])
  local sender = ARGV[i + 2]
  local width = tonumber(ARGV[i + 3])
  local bucket = width > 0 and math.floor(now / width) or -1
  local rampcaps = ARGV[i + 4]
  local idle = tonumber(ARGV[i + 5])
  -- Each message's own recovery period: a batch may mix guards configured differently.
  local recover = tonumber(ARGV[i + 6])
  local m = tonumber(ARGV[i + 7])
  i = i + 8
  local rampday = false
  if rampcaps ~= '' then
    local caps = {}
    for c in string.gmatch(rampcaps, '%d+') do
      caps[#caps + 1] = tonumber(c)
    end
    rampday = 1
    local state = redis.call('HGET', KEYS[7], sender)
    if state then
      local space = string.find(state, ' ', 1, true)
      local day = tonumber(string.sub(state, 1, space - 1))
      local last = tonumber(string.sub(state, space + 1))
      if last == today then
        rampday = day
      elseif today - last <= idle then
        rampday = day + 1
      end
    end
    cap = caps[math.min(rampday, #caps)]
  end
  local shapes = {}
  for s = 1, m do
    local field = ARGV[i]
    local interval = tonumber(ARGV[i + 1])
    if ARGV[i + 3] == '1' then
      interval = interval * factor(field, recover)
    end
    shapes[s] = {field, interval, interval * tonumber(ARGV[i + 2])}
    i = i + 4
  end
  local spread = tonumber(ARGV[i])
  local n = tonumber(ARGV[i + 1])
  i = i + 2
  if counter > 0 and used[counter] == nil then
    used[counter] = tonumber(redis.call('GET', KEYS[counter]) or '0')
    taken[counter] = 0
  end
  local whole = false
  if pauses and sender ~= '' then
    whole = paused(sender .. '\t*')
  end
  local sent = 0
  for j = i, i + 2 * n - 1, 2 do
    local key = ARGV[j]
    local shape = tonumber(ARGV[j + 1])
    local entry = redis.call('HGET', KEYS[1], key)
    local pause = false
    if not entry and pauses and sender ~= '' then
      pause = whole or paused(sender .. '\t' .. (string.match(key, '@([^@]*)$') or ''))
    end
    if entry then
      out[#out + 1] = {0, entry}
    elseif pause then
      out[#out + 1] = {3, pause}
    elseif counter > 0 and used[counter] + taken[counter] >= cap then
      out[#out + 1] = {2, ''}
    else
      -- Every rate that applies must let this send through; then it spends all of them.
      local retry = 0
      for _, s in ipairs({spread, shape}) do
        if s > 0 then
          local t = tat(shapes[s][1])
          if t - now > shapes[s][3] then
            retry = math.max(retry, t - shapes[s][3])
          end
        end
      end
      if retry > 0 then
        out[#out + 1] = {2, exact(retry)}
      else
        for _, s in ipairs({spread, shape}) do
          if s > 0 then
            tats[shapes[s][1]] = tat(shapes[s][1]) + shapes[s][2]
            changed[shapes[s][1]] = true
          end
        end
        if counter > 0 then
          taken[counter] = taken[counter] + 1
        end
        sent = sent + 1
        out[#out + 1] = {1, softs and redis.call('HEXISTS', KEYS[2], key) or 0}
      end
    end
  end
  if bucket >= 0 and sent > 0 then
    redis.call('HINCRBY', KEYS[4], sender .. '\t' .. bucket .. '\ts', sent)
  end
  if rampday and sent > 0 then
    redis.call('HSET', KEYS[7], sender, rampday .. ' ' .. today)
  end
  i = i + 2 * n
end
for field in pairs(changed) do
  redis.call('HSET', KEYS[5], field, exact(tats[field]))
end
for counter, count in pairs(taken) do
  if count > 0 then
    redis.call('INCRBY', KEYS[counter], count)
    redis.call('EXPIRE', KEYS[counter], ttl)
  end
end
return out
