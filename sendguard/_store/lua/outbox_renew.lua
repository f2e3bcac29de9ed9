-- Hold the entries a token has claimed or is sending until a later time.
-- ARGV[1]  token; ARGV[2]  until (stamp); ARGV[3...]  entry ids (each once)
-- Returns how many.
local token, to = ARGV[1], ARGV[2]
local renewed = 0
for i = 3, #ARGV do
  local id = ARGV[i]
  local entry = fetch(id)
  if entry and token ~= '' and entry.token == token
      and (entry.state == 'claimed' or entry.state == 'sending') then
    rewrite(id, entry, {lease_until = to})
    renewed = renewed + 1
  end
end
return renewed
