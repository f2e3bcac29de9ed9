-- Make the waiting or uncertain entries of the ids due now.
-- ARGV[1]  now (stamp); ARGV[2...]  entry ids
-- Returns how many.
local made = 0
for i = 2, #ARGV do
  local id = ARGV[i]
  local entry = fetch(id)
  if entry and (entry.state == 'waiting' or entry.state == 'uncertain') then
    rewrite(id, entry, {state = 'waiting', next_at = ARGV[1], token = '', lease_until = ''})
    made = made + 1
  end
end
return made
