-- A real `opencode run` for the OpenCode specs (opencode_spec.lua: the
-- native plugin; opencode_mcp_spec.lua: bgproc as an MCP server): the
-- npm install, a project with OpenCode's own dirs, the scripted
-- OpenAI-compatible mock (mock-openai.mjs) as its model, and the run.
local h = require "helpers"
local cjson = require "cjson"

local harness = {}

local ROOT = h.root

-- Every JSON object line of s (OpenCode's --format json, the mock's log).
function harness.json_lines(s)
  local out = {}
  for line in (s or ""):gmatch("[^\n]+") do
    local ok, v = pcall(cjson.decode, line)
    if ok and type(v) == "table" then out[#out + 1] = v end
  end
  return out
end

-- The npm cache holding opencode-ai, or nil and why the specs are pending.
function harness.install()
  local ok, out = h.sh(ROOT .. "/tools/ensure-opencode.sh")
  if not ok then
    return nil, "npm could not install opencode-ai (tools/ensure-opencode.sh): "
      .. (out:match("npm error code [^\n]*") or out:match("[^\n]*error[^\n]*") or out:sub(-200))
  end
  return out:match("([^\n]+)\n?$")
end

-- A project under dir with OpenCode's HOME and XDG dirs beside it. Returns
-- { dir, proj, xdg }; `more` are shell commands run after (&&).
function harness.project(dir, cache, more)
  local p = { dir = dir, proj = dir .. "/proj", xdg = dir .. "/xdg" }
  local oc_config = p.xdg .. "/config/opencode"
  local steps = {
    ("mkdir -p %s %s/home %s/data %s/state %s/cache %s"):format(p.proj, dir, p.xdg, p.xdg, p.xdg, oc_config),
    -- OpenCode installs @opencode-ai/plugin into its config folder unless
    -- it is there already (package.json, package-lock.json, node_modules)
    ("ln -s %s/node_modules %s/package.json %s/package-lock.json %s/"):format(cache, cache, cache, oc_config),
  }
  for _, s in ipairs(more or {}) do steps[#steps + 1] = s end
  assert(h.sh(table.concat(steps, " && ")))
  return p
end

-- Start the mock model on loop, answering from `script` (see
-- mock-openai.mjs) and logging each request to <dir>/mock.jsonl. Returns
-- the job and its port.
function harness.mock(loop, env, dir, script)
  h.write_file(dir .. "/script.json", cjson.encode(script))
  local mock = assert(loop:spawn { argv = { "node", ROOT .. "/spec/support/opencode/mock-openai.mjs",
                                            dir .. "/script.json", dir .. "/mock.jsonl" },
                                   env = env, stdin = "pipe" })
  local port
  assert(h.pump(loop, function()
    port = (mock:read(0, nil, "stdout") or ""):match('"port":(%d+)')
    return port or not mock:alive()
  end, 10000), "the mock server did not start")
  assert(port, "the mock server failed: " .. tostring((mock:read(0))))
  return mock, port
end

-- End the mock (it exits when its stdin closes).
function harness.stop_mock(loop, mock)
  mock:close_stdin()
  h.pump(loop, function() return not mock:alive() end, 5000)
end

-- Write <proj>/opencode.json: the mock as the only model, and `extra`
-- (plugin, mcp, permission...).
function harness.config(p, port, extra)
  local cfg = {
    autoupdate = false,
    share = "disabled",
    model = "mock/mock-model",
    small_model = "mock/mock-model",
    enabled_providers = { "mock" },
    provider = { mock = {
      npm = "@ai-sdk/openai-compatible",
      name = "Mock",
      options = { baseURL = ("http://127.0.0.1:%s/v1"):format(port), apiKey = "mock" },
      models = { ["mock-model"] = { name = "Mock model", tool_call = true,
                                    limit = { context = 100000, output = 4096 } } },
    } },
  }
  for k, v in pairs(extra or {}) do cfg[k] = v end
  h.write_file(p.proj .. "/opencode.json", cjson.encode(cfg))
end

-- Start `opencode run PROMPT` in the project, on loop, with env plus
-- OpenCode's dirs and switches (nothing fetched from the network).
function harness.run(loop, cache, p, env, prompt)
  env = h.env_with(env, {
    PWD = p.proj, -- opencode takes its directory from PWD
    HOME = p.dir .. "/home",
    XDG_CONFIG_HOME = p.xdg .. "/config",
    XDG_DATA_HOME = p.xdg .. "/data",
    XDG_STATE_HOME = p.xdg .. "/state",
    XDG_CACHE_HOME = p.xdg .. "/cache",
    OPENCODE_DISABLE_MODELS_FETCH = "1", -- no models.dev
    OPENCODE_DISABLE_AUTOUPDATE = "1",
    OPENCODE_DISABLE_SHARE = "1",
    OPENCODE_DISABLE_LSP_DOWNLOAD = "1",
    OPENCODE_DISABLE_CLAUDE_CODE = "1",
    OPENCODE_DISABLE_DEFAULT_PLUGINS = "1",
  })
  return assert(loop:spawn { argv = { cache .. "/node_modules/.bin/opencode", "run", "--print-logs",
                                      "--format", "json", prompt },
                             cwd = p.proj, env = env })
end

-- false when the run was skipped (npm could not install opencode), else
-- true once the run is known to have exited 0 (an assertion otherwise)
function harness.check_run(run, skip)
  if skip then return false end
  assert(run.code == 0, "opencode run failed:\n" .. tostring(run.err):sub(-3000) .. tostring(run.out):sub(-2000))
  return true
end

return harness
