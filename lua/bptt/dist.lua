--- bptt.dist: data-parallel training over MPI (Open MPI), launched by mpirun.
--
--   local dist = require "bptt.dist"
--   dist.init()                        -- idempotent; MPI_THREAD_FUNNELED
--   print(dist.rank(), dist.size())    -- 0-based rank, number of ranks
--   dist.allreduce(t [, "sum"|"mean"|"max"])   -- in place, float32/float64/int32
--   dist.broadcast(t, root)            -- t becomes root's t on every rank
--   dist.barrier()
--   dist.finalize()                    -- at the end, on every rank (also tried at exit)
--   local trainer = bptt.Trainer{..., dist = dist}   -- data-parallel training
--
-- Tensors must be contiguous (a strided view is an error: pass
-- t:contiguous() and copy back).  MPI errors are Lua errors naming the
-- function.  Beyond the API: dist.allgather(s) -> list of every rank's
-- string, dist.iallreduce(t [, op]) -> request (req:wait(), req:test()),
-- dist.checksum(t) (CRC-32 of the bytes), dist.abort(message [, code]) (ends
-- the whole job), dist.wtime().
--
-- A process that ends without dist.finalize() meets the others at a barrier
-- for BPTT_DIST_EXIT_TIMEOUT seconds (30): if they all end too, MPI is
-- finalized; if not (this rank failed while the others wait in a collective)
-- it aborts the job with a message instead of leaving them hanging.
--
-- The C part is its own module (bptt/dist_core.so, built by `make` when
-- Open MPI's headers are installed), so `require "bptt"` never needs MPI.
local ok, core = pcall(require, "bptt.dist_core")
if not ok then
  local why = tostring(core)
  local hint
  if why:match("libmpi") or why:match("cannot open shared object") then
    hint = "Open MPI's library cannot be loaded"
  elseif why:match("not found") then
    hint = "bptt was built without Open MPI (the module bptt.dist_core is missing)"
  else
    hint = "its C module failed to load"
  end
  error(string.format("bptt.dist: %s; install Open MPI (apt-get install libopenmpi-dev openmpi-bin) "
    .. "and rebuild bptt (make, or luarocks make). The loader said: %s", hint, why), 2)
end

require "bptt.core" -- the tensor type the collectives take

local dist = {}
for k, v in pairs(core) do dist[k] = v end

--- True when this process was started by a launcher (mpirun, srun): its
-- environment says so (OMPI_COMM_WORLD_SIZE, PMI_SIZE or PMIX_RANK).
function dist.launched()
  return os.getenv("OMPI_COMM_WORLD_SIZE") ~= nil or os.getenv("PMI_SIZE") ~= nil or os.getenv("PMIX_RANK") ~= nil
end

--- The first rank whose string differs from rank 0's, with both strings,
-- or nil when every rank gave the same string (a collective).
function dist.first_difference(s)
  local all = core.allgather(s)
  for r = 2, #all do
    if all[r] ~= all[1] then return r - 1, all[1], all[r] end
  end
  return nil
end

--- Checks, on every rank, that every rank gave the same values: fields is a
-- list of {name, value} (values as strings or numbers).  Raises, on every
-- rank alike, an error starting with fn that names the first field that
-- differs, its value on rank 0 and on the first rank where it differs.
function dist.check_same(fn, fields)
  local lines = {}
  for i, f in ipairs(fields) do lines[i] = tostring(f[1]) .. "\0" .. tostring(f[2]) end
  local all = core.allgather(table.concat(lines, "\n"))
  if #all < 2 then return end
  local function parse(s)
    local out = {}
    for line in (s .. "\n"):gmatch("([^\n]*)\n") do
      local k, v = line:match("^([^%z]*)%z(.*)$")
      if k then out[#out + 1] = { k, v } end
    end
    return out
  end
  local ref = parse(all[1])
  for r = 2, #all do
    local theirs = parse(all[r])
    for i = 1, math.max(#ref, #theirs) do
      local a, b = ref[i] or { "?", "(none)" }, theirs[i] or { "?", "(none)" }
      if a[1] ~= b[1] or a[2] ~= b[2] then
        error(string.format("%s: the ranks' configurations differ: %s is %s on rank 0 but %s on rank %d",
          fn, a[1], a[2], a[1] == b[1] and b[2] or (b[1] .. " = " .. b[2]), r - 1), 0)
      end
    end
  end
end

return dist
