-- Admit recipients of one or more messages at once (concurrent sends of a process share a call):
-- check each against the suppression list and the sender's pauses, take warmup quota for the
-- rest, and count the sends for the breaker, atomically.
-- KEYS[1]   suppression hash (address key -> JSON entry)
-- KEYS[2]   soft-bounce hash (address key -> "count first_epoch")
-- KEYS[3]   pause hash ("sender<TAB>recipient domain" or "sender<TAB>*" -> "until_epoch JSON")
-- KEYS[4]   volume hash ("sender<TAB>bucket<TAB>s|b|c" -> count)
-- KEYS[5…]  quota counters (one per sender domain and UTC day) named by the groups below
-- ARGV[1]   lifetime of a counter in seconds
-- ARGV[2]   now, epoch seconds
-- ARGV[3…]  one group per message: counter index into KEYS (0: no cap), cap, sender domain
--           ("" to skip the pause check), volume bucket (-1: not counted), n, then n address
--           keys (their domain follows the @)
-- Returns one item per address, groups in order: {0, entry} suppressed, {3, pause} paused,
-- {2} over quota, {1, soft} clear (soft = 1 when soft bounces are on record).
local ttl = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
local used = {}
local taken = {}
local out = {}
-- Most of the time nothing is paused and no soft bounce is on record: skip those lookups then.
local pauses = redis.call('EXISTS', KEYS[3]) == 1
local softs = redis.call('EXISTS', KEYS[2]) == 1

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
  return string.sub(pause, space + 1)
end

local i = 3
while i <= #ARGV do
  local counter = tonumber(ARGV[i])
  local cap = tonumber(ARGV[i + 1])
  local sender = ARGV[i + 2]
  local bucket = tonumber(ARGV[i + 3])
  local n = tonumber(ARGV[i + 4])
  i = i + 5
  if counter > 0 and used[counter] == nil then
    used[counter] = tonumber(redis.call('GET', KEYS[counter]) or '0')
    taken[counter] = 0
  end
  local whole = false
  if pauses and sender ~= '' then
    whole = paused(sender .. '\t*')
  end
  local sent = 0
  for j = i, i + n - 1 do
    local key = ARGV[j]
    local entry = redis.call('HGET', KEYS[1], key)
    local pause = false
    if not entry and pauses and sender ~= '' then
      pause = whole or paused(sender .. '\t' .. (string.match(key, '@([^@]*)$') or ''))
    end
    if entry then
      out[#out + 1] = {0, entry}
    elseif pause then
      out[#out + 1] = {3, pause}
    elseif counter == 0 or used[counter] + taken[counter] < cap then
      if counter > 0 then
        taken[counter] = taken[counter] + 1
      end
      sent = sent + 1
      out[#out + 1] = {1, softs and redis.call('HEXISTS', KEYS[2], key) or 0}
    else
      out[#out + 1] = {2}
    end
  end
  if bucket >= 0 and sent > 0 then
    redis.call('HINCRBY', KEYS[4], sender .. '\t' .. bucket .. '\ts', sent)
  end
  i = i + n
end
for counter, count in pairs(taken) do
  if count > 0 then
    redis.call('INCRBY', KEYS[counter], count)
    redis.call('EXPIRE', KEYS[counter], ttl)
  end
end
return out
