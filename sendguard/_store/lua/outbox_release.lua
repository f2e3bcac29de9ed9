-- Give back the entries a token claimed and has not started.
-- ARGV[1]  token
-- Returns how many.
local token = ARGV[1]
if token == '' then
  return 0
end
local p = e(token) .. ':'
local held = redis.call('ZRANGEBYLEX', HOLDS, '[' .. p, '(' .. e(token) .. ';')
for _, member in ipairs(held) do
  local id = string.sub(member, #p + 1)
  rewrite(id, fetch(id), {state = 'waiting', token = '', lease_until = ''})
end
return #held
