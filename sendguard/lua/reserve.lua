-- Check recipients against the suppression list and take warmup quota for the rest, atomically.
-- KEYS[1]  suppression hash (address key -> JSON entry)
-- KEYS[2]  today's quota counter of the sender domain (untouched when ARGV[1] is -1)
-- ARGV[1]  today's cap, or -1 for no cap
-- ARGV[2]  lifetime of the counter in seconds
-- ARGV[3…] address keys, in envelope order
-- Returns one item per address: its JSON entry if suppressed, 1 if clear to send, 0 if over quota.
local cap = tonumber(ARGV[1])
local used = 0
if cap >= 0 then
  used = tonumber(redis.call('GET', KEYS[2]) or '0')
end
local taken = 0
local out = {}
for i = 3, #ARGV do
  local entry = redis.call('HGET', KEYS[1], ARGV[i])
  if entry then
    out[#out + 1] = entry
  elseif cap < 0 or used + taken < cap then
    taken = taken + 1
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
if cap >= 0 and taken > 0 then
  redis.call('INCRBY', KEYS[2], taken)
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[2]))
end
return out
