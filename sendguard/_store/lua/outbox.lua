-- The outbox's layout and its upkeep, shared by every outbox_*.lua script: sendguard's RedisStore
-- puts this file before each of them, and passes each the same keys, all under one hash tag.
-- KEYS[1]   entries: hash, entry id -> JSON (letter, recipient, sender_domain, stream, next_at,
--           created_at, attempts, state, detail, token, lease_until)
-- KEYS[2]   letters: hash, letter id -> its JSON header, a newline, the message's bytes
-- KEYS[3]   refs: hash, letter id -> how many entries it has (the last one gone takes it along)
-- KEYS[4]   ids: every entry id
-- KEYS[5]   waiting: e(stream) .. next_at .. id of every waiting entry (claim's order)
-- KEYS[6]   due: e(sender_domain) .. e(stream) .. next_at .. id of every waiting entry
-- KEYS[7]   leases: lease_until .. id of every claimed or sending entry with a lease
-- KEYS[8]   created: e(sender_domain) .. e(stream) .. created_at .. id of every entry
-- KEYS[9]   counts: hash, e(sender_domain) .. e(stream) .. "w", "c" or "u" -> how many entries
--           of the pair are waiting, claimed or sending, uncertain (a field at 0 is deleted)
-- KEYS[10]  holds: e(token) .. ":" .. id of every claimed entry with a token (release's)
-- KEYS[4...8] and KEYS[10] are sorted sets whose scores are all 0: Redis orders their members
-- bytewise, which is MemoryStore's order of ids (UTF-8 keeps the order of code points).
-- Times are stamps: microseconds since 0001-01-01 UTC in 18 zero-padded digits, so that they
-- compare as text and come back to Python exact (a double would round them); "" is no time.
-- e(s) = #s .. ":" .. s: no e() is a prefix of another, so the members of one stream, pair or
-- token are exactly those that begin with its e(), and after it comes a digit or ":".
local ENTRIES, LETTERS, REFS, IDS, WAITING, DUE, LEASES, CREATED, COUNTS, HOLDS = unpack(KEYS)

local function e(s)
  return #s .. ':' .. s
end

local function pair(entry)
  return e(entry.sender_domain) .. e(entry.stream)
end

-- Whether stamp a is later than stamp b: whole numbers past 2^53 as doubles are not exact, and
-- Lua compares text by the server's locale; two halves of nine digits are exact numbers.
local function later(a, b)
  local a1, b1 = tonumber(string.sub(a, 1, 9)), tonumber(string.sub(b, 1, 9))
  if a1 ~= b1 then
    return a1 > b1
  end
  return tonumber(string.sub(a, 10)) > tonumber(string.sub(b, 10))
end

local function fetch(id)
  local raw = redis.call('HGET', ENTRIES, id)
  return raw and cjson.decode(raw)
end

local function tally(entry)
  if entry.state == 'waiting' then
    return 'w'
  elseif entry.state == 'uncertain' then
    return 'u'
  end
  return 'c'
end

-- Put the entry in (on) or take it out of (not on) what its state indexes: MemoryStore's claim
-- scans for waiting entries, its lease check for claimed or sending ones with a lease, its
-- release for claimed ones of a token.
local function place(id, entry, on)
  local function index(key, member)
    if on then
      redis.call('ZADD', key, 0, member)
    else
      redis.call('ZREM', key, member)
    end
  end
  if entry.state == 'waiting' then
    index(WAITING, e(entry.stream) .. entry.next_at .. id)
    index(DUE, pair(entry) .. entry.next_at .. id)
  end
  if (entry.state == 'claimed' or entry.state == 'sending') and entry.lease_until ~= '' then
    index(LEASES, entry.lease_until .. id)
  end
  if entry.state == 'claimed' and entry.token ~= '' then
    index(HOLDS, e(entry.token) .. ':' .. id)
  end
  local field = pair(entry) .. tally(entry)
  if on then
    redis.call('HINCRBY', COUNTS, field, 1)
  elseif redis.call('HINCRBY', COUNTS, field, -1) <= 0 then
    redis.call('HDEL', COUNTS, field)
  end
end

-- Change the entry's fields as *changes* says; returns its new JSON.
local function rewrite(id, entry, changes)
  place(id, entry, false)
  for name, value in pairs(changes) do
    entry[name] = value
  end
  place(id, entry, true)
  local raw = cjson.encode(entry)
  redis.call('HSET', ENTRIES, id, raw)
  return raw
end

local function add(id, raw)
  local entry = cjson.decode(raw)
  redis.call('HSET', ENTRIES, id, raw)
  redis.call('ZADD', IDS, 0, id)
  redis.call('ZADD', CREATED, 0, pair(entry) .. entry.created_at .. id)
  place(id, entry, true)
  redis.call('HINCRBY', REFS, entry.letter, 1)
end

local function remove(id, entry)
  redis.call('HDEL', ENTRIES, id)
  redis.call('ZREM', IDS, id)
  redis.call('ZREM', CREATED, pair(entry) .. entry.created_at .. id)
  place(id, entry, false)
  if redis.call('HINCRBY', REFS, entry.letter, -1) <= 0 then
    redis.call('HDEL', REFS, entry.letter)
    redis.call('HDEL', LETTERS, entry.letter)
  end
end

