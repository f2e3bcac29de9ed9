-- Count the kept entries per sender domain and stream, in one consistent read.
-- ARGV[1]  now + 1 microsecond (stamp): a next_at before it has come
-- Returns one {sender domain, stream, waiting, due, claimed or sending, uncertain, oldest
-- created_at (stamp)} per pair, in no particular order.
local function decode(s, at)
  local colon = string.find(s, ':', at, true)
  local last = colon + tonumber(string.sub(s, at, colon - 1))
  return string.sub(s, colon + 1, last), last + 1
end
local counts, order = {}, {}
local all = redis.call('HGETALL', COUNTS)
for k = 1, #all, 2 do
  local p = string.sub(all[k], 1, -2)
  if counts[p] == nil then
    counts[p] = {w = 0, c = 0, u = 0}
    order[#order + 1] = p
  end
  counts[p][string.sub(all[k], -1)] = tonumber(all[k + 1])
end
local out = {}
for _, p in ipairs(order) do
  local sender_domain, at = decode(p, 1)
  local stream = decode(p, at)
  local due = redis.call('ZLEXCOUNT', DUE, '[' .. p, '(' .. p .. ARGV[1])
  local first = redis.call('ZRANGEBYLEX', CREATED, '[' .. p, '(' .. p .. ':', 'LIMIT', 0, 1)[1]
  local c = counts[p]
  out[#out + 1] = {sender_domain, stream, c.w, due, c.c, c.u, string.sub(first, #p + 1, #p + 18)}
end
return out
