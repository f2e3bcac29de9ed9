-- End the leases that ran out, then claim due entries stream by stream (see Store.claim).
-- ARGV[1]  now + 1 microsecond (stamp): a lease or next_at before it has come
-- ARGV[2]  the claim's lease_until (stamp); ARGV[3]  token; ARGV[4]  limit
-- ARGV[5]  the detail of an entry whose sender was lost (MemoryStore's words)
-- ARGV[6...]  the streams, in the order they are claimed
-- Returns {{entry id, JSON} of each entry claimed, {letter id, letter} of each of their letters}.
local soon, till, token, limit, lost = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
for _, member in ipairs(redis.call('ZRANGEBYLEX', LEASES, '-', '(' .. soon)) do
  local id = string.sub(member, 19)
  local entry = fetch(id)
  if entry.state == 'claimed' then
    rewrite(id, entry, {state = 'waiting', token = '', lease_until = ''})
  else
    -- It was being sent: the provider may have it.  Its token stays, for a late finish.
    rewrite(id, entry, {state = 'uncertain', lease_until = '', detail = lost})
  end
end
local taken, letters, seen = {}, {}, {}
for s = 6, #ARGV do
  if #taken >= limit then
    break
  end
  local p = e(ARGV[s])
  local due = redis.call('ZRANGEBYLEX', WAITING, '[' .. p, '(' .. p .. soon, 'LIMIT', 0, limit - #taken)
  for _, member in ipairs(due) do
    local id = string.sub(member, #p + 19)
    local entry = fetch(id)
    taken[#taken + 1] = {id, rewrite(id, entry, {state = 'claimed', token = token, lease_until = till})}
    if not seen[entry.letter] then
      seen[entry.letter] = true
      local letter = redis.call('HGET', LETTERS, entry.letter)
      if letter then
        letters[#letters + 1] = {entry.letter, letter}
      end
    end
  end
end
return {taken, letters}
