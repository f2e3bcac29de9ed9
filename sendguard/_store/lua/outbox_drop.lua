-- Delete the entries of the ids that are not being sent (and the letters they leave empty).
-- ARGV[1...]  entry ids
-- Returns how many.
local dropped = 0
for i = 1, #ARGV do
  local id = ARGV[i]
  local entry = fetch(id)
  if entry and entry.state ~= 'sending' then
    remove(id, entry)
    dropped = dropped + 1
  end
end
return dropped
