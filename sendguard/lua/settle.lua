-- Record a delivery's outcome: give back quota that was not used and add suppressions, atomically.
-- KEYS[1]  suppression hash (address key -> JSON entry)
-- KEYS[2]  today's quota counter of the sender domain
-- ARGV[1]  quota to give back (never lowers the counter below zero)
-- ARGV[2…] pairs of address key, JSON entry; an address already listed keeps its first entry
-- Returns 1 per pair that was added, 0 per pair that was already listed.
local back = tonumber(ARGV[1])
if back > 0 then
  local used = tonumber(redis.call('GET', KEYS[2]) or '0')
  if used > 0 then
    redis.call('SET', KEYS[2], math.max(0, used - back), 'KEEPTTL')
  end
end
local out = {}
for i = 2, #ARGV, 2 do
  out[#out + 1] = redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1])
end
return out
