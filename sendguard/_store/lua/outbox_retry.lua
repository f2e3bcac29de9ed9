-- Make the waiting or uncertain entries of the ids due now, kept since now.
-- ARGV[1]  now (stamp); ARGV[2...]  entry ids
-- Returns how many.
local now = ARGV[1]
local made = 0
for i = 2, #ARGV do
  local id = ARGV[i]
  local entry = fetch(id)
  if entry and (entry.state == 'waiting' or entry.state == 'uncertain') then
    redis.call('ZREM', CREATED, pair(entry) .. entry.created_at .. id)
    rewrite(id, entry, {state = 'waiting', next_at = now, created_at = now, token = '',
                        lease_until = ''})
    redis.call('ZADD', CREATED, 0, pair(entry) .. entry.created_at .. id)
    made = made + 1
  end
end
return made
