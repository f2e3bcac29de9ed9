-- Mark the entries a token holds, lease not run out, as being sent.
-- ARGV[1]  now (stamp); ARGV[2]  token; ARGV[3...]  entry ids
-- Returns the ids marked.
local now, token = ARGV[1], ARGV[2]
local started = {}
for i = 3, #ARGV do
  local id = ARGV[i]
  local entry = fetch(id)
  if entry and entry.state == 'claimed' and entry.token == token
      and entry.lease_until ~= '' and later(entry.lease_until, now) then
    rewrite(id, entry, {state = 'sending'})
    started[#started + 1] = id
  end
end
return started
