-- Store a letter (unless it is kept already) and those of its entries not kept yet.
-- ARGV[1]  letter id; ARGV[2]  the letter as stored (see KEYS[2])
-- ARGV[3...]  pairs: entry id, its JSON
-- Returns how many entries were stored.
redis.call('HSETNX', LETTERS, ARGV[1], ARGV[2])
local written = 0
for i = 3, #ARGV, 2 do
  if redis.call('HEXISTS', ENTRIES, ARGV[i]) == 0 then
    add(ARGV[i], ARGV[i + 1])
    written = written + 1
  end
end
return written
