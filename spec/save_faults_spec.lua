-- Fault injection on bptt.save's paths: the target a FIFO, a directory, a
-- symbolic link; a read-only directory or file system; a full disk (a 64 KB
-- tmpfs, where this machine lets the spec mount one).  Each time: nil, a
-- message naming the path (and errno where the OS refused), no temporary
-- left behind, and nothing lost -- the previous file intact and loadable.
local bptt = require "bptt"
local P = require "helpers.proc"

local function sh(cmd) return (P.run(cmd)) end

local function readfile(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local ERRNO = { EACCES = 13, EISDIR = 21, ENOSPC = 28, EROFS = 30 } -- Linux

local function small() return { w = bptt.tensor({ 1, 2, 3, 4 }), step = bptt.tensor({ 7 }, "int32") } end
local function big(n) return { w = bptt.randn(n) } end

-- saves a first file at path and returns a checker: it still loads, byte for byte as written
local function previous(path)
  assert.is_true(bptt.save(path, small(), { iteration = "1" }))
  local bytes = readfile(path)
  return function(what)
    assert.equal(bytes, readfile(path), what .. ": the previous file changed")
    local t, meta = bptt.load(path)
    assert(t, what .. ": the previous file does not load: " .. tostring(meta))
    assert.same({ 1, 2, 3, 4 }, t.w:totable())
    assert.equal("1", meta.iteration)
  end
end

local function no_temporaries(dir, what)
  for _, name in ipairs(P.listdir(dir)) do
    assert(not name:find(".tmp.", 1, true), what .. ": a temporary was left behind: " .. name)
  end
end

local function is_root() return select(2, P.run("id -u")):match("^0") ~= nil end

describe("bptt.save under faults: nothing lost", function()
  local dir, cleanup
  before_each(function() dir, cleanup = P.tempdir() end)
  after_each(function() cleanup() end)

  it("a FIFO or a directory at the path: refused, left as it was", function()
    local keep = previous(dir .. "/good.safetensors")
    assert(sh("mkfifo " .. P.quote(dir .. "/fifo") .. " && mkdir " .. P.quote(dir .. "/d")))
    local ok, msg = bptt.save(dir .. "/fifo", small())
    assert.is_nil(ok)
    assert.truthy(msg:find("bptt.save: " .. dir .. "/fifo: ", 1, true), msg)
    local errno
    ok, msg, errno = bptt.save(dir .. "/d", small())
    assert.is_nil(ok)
    assert.truthy(msg:find("bptt.save: " .. dir .. "/d: ", 1, true), msg)
    assert.equal(ERRNO.EISDIR, errno)
    assert(sh("test -p " .. P.quote(dir .. "/fifo") .. " && test -d " .. P.quote(dir .. "/d")))
    assert.same({}, P.listdir(dir .. "/d"))
    no_temporaries(dir, "FIFO/directory")
    keep("FIFO/directory")
  end)

  it("a symbolic link: its target replaced whole, the link kept, the old target's other links unaffected", function()
    local target = dir .. "/real.safetensors"
    local keep_other = previous(dir .. "/other.safetensors")
    assert.is_true(bptt.save(target, small()))
    assert(sh("ln -s real.safetensors " .. P.quote(dir .. "/link")))
    assert.is_true(bptt.save(dir .. "/link", big(10), { iteration = "2" }))
    assert(sh("test -L " .. P.quote(dir .. "/link")))
    local t, meta = bptt.load(target)
    assert.equal(10, t.w:numel())
    assert.equal("2", meta.iteration)
    no_temporaries(dir, "symlink")
    keep_other("symlink")
  end)

  it("a read-only directory: refused (EACCES, or EROFS on a read-only file system), the previous file kept", function()
    local sub = dir .. "/ro"
    assert(sh("mkdir " .. P.quote(sub)))
    local path = sub .. "/m.safetensors"
    local keep
    local mounted = false
    if is_root() then -- root ignores a directory's permissions: a read-only mount instead
      mounted = sh("mount -t tmpfs -o size=1m tmpfs " .. P.quote(sub) .. " 2>/dev/null")
      if not mounted then
        pending("running as root, where a read-only directory does not stop writes, and mount is not allowed")
        return
      end
      keep = previous(path)
      assert(sh("mount -o remount,ro " .. P.quote(sub)))
    else
      keep = previous(path)
      assert(sh("chmod 555 " .. P.quote(sub)))
    end
    local ok_all, err = pcall(function()
      local ok, msg, errno = bptt.save(path, big(100), { iteration = "2" })
      assert.is_nil(ok)
      assert.truthy(msg:find("bptt.save: " .. path .. ": cannot create the temporary file", 1, true), msg)
      assert.equal(mounted and ERRNO.EROFS or ERRNO.EACCES, errno)
      no_temporaries(sub, "read-only")
      keep("read-only")
    end)
    if mounted then sh("umount " .. P.quote(sub)) else sh("chmod 755 " .. P.quote(sub)) end
    assert(ok_all, err)
  end)

  it("a full disk (ENOSPC on a 64 KB tmpfs): refused, the temporary removed, the previous file kept", function()
    if not is_root() then
      pending("mounting a small tmpfs needs root")
      return
    end
    local sub = dir .. "/small"
    assert(sh("mkdir " .. P.quote(sub)))
    if not sh("mount -t tmpfs -o size=64k tmpfs " .. P.quote(sub) .. " 2>/dev/null") then
      pending("this machine does not allow mounting a tmpfs (no CAP_SYS_ADMIN)")
      return
    end
    local ok_all, err = pcall(function()
      local path = sub .. "/m.safetensors"
      local keep = previous(path)
      -- 20000 floats = 80 KB: more than the file system holds
      local ok, msg, errno = bptt.save(path, big(20000), { iteration = "2" })
      assert.is_nil(ok)
      assert.truthy(msg:find("bptt.save: " .. path .. ": cannot write the temporary file", 1, true), msg)
      assert.truthy(msg:find("No space left on device", 1, true), msg)
      assert.equal(ERRNO.ENOSPC, errno)
      no_temporaries(sub, "disk full")
      keep("disk full")
      -- and once there is room again, the next save goes through
      assert.is_true(bptt.save(path, big(1000), { iteration = "3" }))
      assert.equal("3", select(2, bptt.load(path)).iteration)
    end)
    sh("umount " .. P.quote(sub))
    assert(ok_all, err)
  end)
end)
