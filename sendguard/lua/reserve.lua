-- Check recipients against the suppression list and take warmup quota for the rest, atomically,
-- for one or more messages at once (concurrent sends of one process share a call).
-- KEYS[1]   suppression hash (address key -> JSON entry)
-- KEYS[2…]  quota counters (one per sender domain and UTC day) named by the groups below
-- ARGV[1]   lifetime of a counter in seconds
-- ARGV[2…]  one group per message: counter index into KEYS (0: no cap), cap, n, n address keys
-- Returns one item per address, groups in order: its JSON entry if suppressed, 1 if clear to
-- send, 0 if over quota.
local ttl = tonumber(ARGV[1])
local used = {}
local taken = {}
local out = {}
local i = 2
while i <= #ARGV do
  local counter = tonumber(ARGV[i])
  local cap = tonumber(ARGV[i + 1])
  local n = tonumber(ARGV[i + 2])
  i = i + 3
  if counter > 0 and used[counter] == nil then
    used[counter] = tonumber(redis.call('GET', KEYS[counter]) or '0')
    taken[counter] = 0
  end
  for j = i, i + n - 1 do
    local entry = redis.call('HGET', KEYS[1], ARGV[j])
    if entry then
      out[#out + 1] = entry
    elseif counter == 0 then
      out[#out + 1] = 1
    elseif used[counter] + taken[counter] < cap then
      taken[counter] = taken[counter] + 1
      out[#out + 1] = 1
    else
      out[#out + 1] = 0
    end
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
