-- Apply each finish to its entry if the token holds it (see Store.finish).
-- ARGV[1]  token
-- ARGV[2...]  groups of five: entry id; state ("" when done: the entry goes); next_at (stamp,
--             "": unchanged); attempts; detail
-- Returns how many applied.
local token = ARGV[1]
local applied = 0
for i = 2, #ARGV, 5 do
  local id, state, next_at = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local entry = fetch(id)
  if entry and token ~= '' and entry.token == token then
    applied = applied + 1
    if state == '' then
      remove(id, entry)
    else
      rewrite(id, entry, {
        state = state,
        next_at = next_at ~= '' and next_at or entry.next_at,
        attempts = tonumber(ARGV[i + 3]),
        detail = ARGV[i + 4],
        token = state == 'uncertain' and token or '',
        lease_until = '',
      })
    end
  end
end
return applied
