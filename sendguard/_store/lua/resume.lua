-- Lift every pause of one sender atomically; count those still in force (see Store.resume).
-- KEYS[1]  pause hash ("sender<TAB>recipient domain" or "sender<TAB>*" -> "until_epoch JSON")
-- ARGV[1]  sender domain
-- ARGV[2]  now: epoch seconds, or "server" for the Redis server's clock
-- Returns how many of the deleted pauses were in force (their until later than now).
local now = ARGV[2]
if now == 'server' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
else
  now = tonumber(now)
end
local prefix = ARGV[1] .. '\t'
local fields = {}
local in_force = 0
local all = redis.call('HGETALL', KEYS[1])
for k = 1, #all, 2 do
  local field = all[k]
  if string.sub(field, 1, #prefix) == prefix then
    local stored = all[k + 1]
    if tonumber(string.sub(stored, 1, string.find(stored, ' ', 1, true) - 1)) > now then
      in_force = in_force + 1
    end
    fields[#fields + 1] = field
  end
end
if #fields > 0 then
  redis.call('HDEL', KEYS[1], unpack(fields))
end
return in_force
