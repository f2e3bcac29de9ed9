-- Lift every pause of one sender atomically; count those still in force (see Store.resume).
-- KEYS[1]  pause hash ("sender<TAB>recipient domain" or "sender<TAB>*" -> "until_epoch JSON";
--          "<TAB>clock" -> the latest epoch a caller gave while something was paused)
-- ARGV[1]  sender domain
-- ARGV[2]  now: epoch seconds; "server" for the Redis server's clock; "latest" for the
--          "<TAB>clock" field, else (none kept) ARGV[3]
-- ARGV[3]  the client's clock, epoch seconds
-- Returns how many of the deleted pauses were in force (their until later than now).
local now = ARGV[2]
if now == 'server' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
elseif now == 'latest' then
  now = tonumber(redis.call('HGET', KEYS[1], '\tclock') or ARGV[3])
else
  now = tonumber(now)
end
local prefix = ARGV[1] .. '\t'
local fields = {}
local in_force = 0
local all = redis.call('HGETALL', KEYS[1])
for k = 1, #all, 2 do
  local field = all[k]
  if field ~= '\tclock' and string.sub(field, 1, #prefix) == prefix then
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
-- Nothing paused any more: the clock goes too (the next pause starts it again).
if redis.call('HLEN', KEYS[1]) == 1 and redis.call('HEXISTS', KEYS[1], '\tclock') == 1 then
  redis.call('DEL', KEYS[1])
end
return in_force
