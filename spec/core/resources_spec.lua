-- bgproc.core: running out of fds (EMFILE) or processes (EAGAIN) gives a
-- clear error, leaks nothing, and spawning works again once room is made.
local core = require "bgproc.core"
local h = require "helpers"

local function parse(out)
  local r = {}
  for k, v in out:gmatch("([%w_]+)=([^\n]*)") do r[k] = v end
  return r
end

describe("core under resource exhaustion", function()
  local loop
  before_each(function() loop = core.new() end)
  after_each(function() loop:close() end)

  it("reports EMFILE under a low fd limit, leaks no fd, recovers", function()
    local job = assert(loop:spawn {
      command = 'ulimit -n 40 && exec "$LUA" "$FIXTURE" fds',
      env = h.lua_env { FIXTURE = h.fixture("exhaust.lua"), LUA = h.lua },
    })
    local out = h.finish(loop, job, 15000)
    local r = parse(out)
    assert.equal("done", out:match("done"), out)
    assert.equal("EMFILE", r.errname)
    -- a pipe or the pidfd is the fd that could not be had
    assert.matches("^EMFILE: spawn 'sleep' %(%a+%): Too many open files$", r.errmsg)
    assert.is_true(tonumber(r.started) >= 5)
    assert.equal(3, tonumber(r.fds_per_job)) -- pidfd, stdout, stderr
    assert.equal("true", r.again)
    assert.equal(0, tonumber(r.fds_leaked))
  end)

  it("reports EAGAIN when the user's process limit is reached, and recovers", function()
    if not os.execute("command -v setpriv >/dev/null") then
      pending("setpriv (util-linux) is not installed")
      return
    end
    -- RLIMIT_NPROC does not bind root: run as nobody from a copy nobody can read
    local dir = h.tmpdir()
    assert(os.execute(("mkdir -p %s/bgproc && cp %s/lua/bgproc/core.so %s/bgproc/ && cp %s %s/ && chmod -R a+rX %s")
      :format(dir, h.root, dir, h.fixture("exhaust.lua"), dir, dir)))
    local job = assert(loop:spawn {
      command = ("setpriv --reuid=65534 --regid=65534 --clear-groups bash -c " ..
        "'ulimit -u $(( $(ps -u 65534 --no-headers | wc -l) + 12 )) && exec lua5.4 %s/exhaust.lua procs'"):format(dir),
      env = { LUA_CPATH_5_4 = dir .. "/?.so;;" },
    })
    local out = h.finish(loop, job, 15000)
    os.execute("rm -rf " .. dir)
    local r = parse(out)
    assert.equal("done", out:match("done"), out)
    assert.equal("EAGAIN", r.errname)
    assert.matches("^EAGAIN: spawn 'sleep' %(clone%): Resource temporarily unavailable$", r.errmsg)
    assert.is_true(tonumber(r.started) >= 3, out)
    assert.equal("true", r.again)
  end)
end)
