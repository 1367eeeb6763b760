-- Writes the demo corpus: a few hundred kilobytes of small verses made from a
-- grammar written for this project (no outside text), with a fixed seed so
-- every machine trains on the same bytes.  The structure is easy to learn and
-- hard to memorize: rhyming couplets, speakers' names, punctuation, numbers.
--
--   luajit examples/charlm/make_corpus.lua out.txt [kilobytes=300]
local out, kb = arg[1], tonumber(arg[2] or "300")
if not out then
  io.stderr:write("usage: luajit examples/charlm/make_corpus.lua OUT.txt [KILOBYTES]\n")
  os.exit(2)
end

-- a small linear congruential generator: the same verses everywhere
local state = 20261125
local function rand(n)
  state = (state * 1103515245 + 12345) % 2147483648
  return math.floor(state / 65536) % n + 1
end
local function pick(t) return t[rand(#t)] end

local speakers = { "MARGOT", "THE KEEPER", "OLD TOBIAS", "WREN", "THE MILLER", "ISOLDE", "A CHILD", "BRAM" }
local subjects = { "the river", "a lantern", "the old mill", "my sister", "the north wind", "a grey heron",
  "the baker", "the last ferry", "our garden", "the clockmaker", "a paper boat", "the morning bell" }
local verbs = { "carries", "remembers", "forgets", "follows", "waits for", "sings to", "counts", "mends",
  "hides", "finds", "keeps", "answers" }
local objects = { "the salt", "a thousand stones", "the quiet hour", "every crooked gate", "the lamps",
  "the winter bread", "a letter", "the long road home", "seven silver keys", "the rain" }
local endings = {
  { "into the light", "all through the night", "until it is bright", "the hills turn white", "out of sight" },
  { "and drifts away", "where the clouds are grey", "and asks me to stay", "at the end of the day",
    "with nothing to say" },
  { "down to the sea", "under the tree", "and the birds fly free", "and waits for me", "at a quarter past three" },
  { "on a cold stone", "and walks alone", "as if it were known", "where the reeds have grown", "and calls it its own" },
  { "in the rain", "along the lane", "and back again", "across the plain", "among the grain" },
}
local adverbs = { "slowly", "softly", "once more", "at dawn", "by the door", "without a word", "in the dark" }

local function line(rhyme)
  local s = pick(subjects) .. " " .. pick(verbs) .. " " .. pick(objects)
  if rand(3) == 1 then s = s .. " " .. pick(adverbs) end
  s = s .. " " .. rhyme
  return s:sub(1, 1):upper() .. s:sub(2)
end

local f = assert(io.open(out, "w"))
local written, verse = 0, 0
while written < kb * 1024 do
  verse = verse + 1
  local parts = { pick(speakers) .. ":" }
  for _ = 1, rand(3) do
    local e = pick(endings)
    local a, b = rand(#e), rand(#e)
    if a == b then b = b % #e + 1 end
    parts[#parts + 1] = line(e[a]) .. ";"
    parts[#parts + 1] = line(e[b]) .. (rand(4) == 1 and "!" or ".")
  end
  if verse % 25 == 0 then parts[#parts + 1] = "(verse " .. verse .. ")" end
  local text = table.concat(parts, "\n") .. "\n\n"
  f:write(text)
  written = written + #text
end
f:close()
print(string.format("wrote %s: %d bytes, %d verses", out, written, verse))
