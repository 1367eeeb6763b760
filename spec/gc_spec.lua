-- Tensor storage lives outside the Lua heap; the collector must still free it
-- (STYLE.md 5).  Making and dropping several GB of tensors in a loop, without
-- ever calling collectgarbage, must keep resident memory flat.  With
-- BPTT_SPEC_LIGHT set (under valgrind) the loops make 200 MB instead of 4 GB,
-- and every test still fails if storage is not freed.
local bptt = require "bptt"
local U = require "helpers.tensor_util"

local MB = 1024 * 1024
local SCALE = U.light and 2 or 100 -- MB per tensor
local ROUNDS = U.light and 100 or 40
-- MB of growth allowed: a quarter of what the loop allocates, plus what the
-- allocators keep back.  glibc serves blocks under 32 MB from its heap and
-- trims that lazily (2 MB blocks plateau near 24 MB); ASan's quarantine holds
-- up to 256 MB of freed blocks, memcheck's freed queue 20 MB.
local SLACK = (U.light and 32 or 0) + (U.memtool == "asan" and 256 or U.memtool == "valgrind" and 20 or 0)
local LIMIT = SCALE * ROUNDS / 4 + SLACK

-- float32 elements in `mb` megabytes, as a 2-d shape
local function shape_of(mb) return mb * MB / 4 / 1024, 1024 end

-- resident growth since `base`, in MB
local function growth(base) return (U.rss() - base) / MB end

describe("tensor storage", function()
  it("is freed by the collector when tensors are dropped in a loop", function()
    local base, peak = U.rss(), 0
    for i = 1, ROUNDS do
      local t = bptt.zeros(shape_of(SCALE)) -- zeros writes every page: all of it is resident
      t:set(1, 1, i)
      peak = math.max(peak, growth(base))
    end
    assert.is_true(peak < LIMIT,
      string.format("resident memory grew by %.0f MB making %d x %d MB tensors", peak, ROUNDS, SCALE))
  end)

  it("is freed with the last view, and views keep it alive until then", function()
    -- 1 GB in 40 MB tensors (200 MB light): blocks this size bypass glibc's heap
    local size = U.light and 2 or 40
    local rounds, rows = U.light and 100 or 25, shape_of(size)
    local base, peak = U.rss(), 0
    for i = 1, rounds do
      local t = bptt.ones(shape_of(size))
      t:set(rows, 3, i)
      local row = t:select(1, 2)
      local block = t:narrow(2, 3, 10):t() -- 10 x rows
      t = nil -- luacheck: ignore (only the views hold the storage now)
      assert.are.equal(1024, row:sum())
      assert.are.equal(i, block:get(1, rows))
      assert.are.equal(10 * rows + i - 1, block:sum())
      peak = math.max(peak, growth(base))
    end
    assert.is_true(peak < size * rounds / 4 + SLACK,
      string.format("resident memory grew by %.0f MB making views of %d x %d MB tensors", peak, rounds, size))
  end)

  -- memcheck keeps a freed block's pages mapped (only its shadow goes back),
  -- so resident memory cannot show t:free() at work under valgrind
  local it_rss = U.memtool == "valgrind" and pending or it
  it_rss("is returned at once by t:free()", function()
    local size = U.light and 32 or 400 -- MB, above what the memory tools hold back
    collectgarbage()
    collectgarbage() -- so that no collection during zeros() frees older garbage and hides the growth
    local before = U.rss()
    local t = bptt.zeros(shape_of(size))
    local during = U.rss()
    assert.is_true(during - before > size * MB * 0.9,
      string.format("zeros made only %.0f of %d MB resident", (during - before) / MB, size))
    t:free()
    local after = U.rss()
    assert.is_true(during - after > size * MB * 0.9,
      string.format("t:free() gave back only %.0f of %d MB", (during - after) / MB, size))
  end)

  it("of matmul's scratch copies is freed too", function()
    local n = U.light and 256 or 2048 -- a strided n x n float32 operand: 16 MB of scratch at full size
    local a = bptt.ones(n, 2 * n):view(n, n, 2):select(3, 1)
    local b = bptt.ones(1, n):t() -- n x 1: BLAS reads it as is
    local rounds = U.light and 40 or 20
    local base, peak = U.rss(), 0
    for _ = 1, rounds do
      local c = bptt.matmul(a, b)
      assert.are.equal(n, c:get(n, 1))
      peak = math.max(peak, growth(base))
    end
    local scratch = n * n * 4 / MB
    assert.is_true(peak < scratch * rounds / 4 + SLACK,
      string.format("resident memory grew by %.0f MB making %d scratch copies of %.0f MB", peak, rounds, scratch))
  end)
end)
