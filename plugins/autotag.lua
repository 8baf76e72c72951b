-- autotag: tags from the command line, so agents and people can filter by
-- kind without tagging by hand: test, server, build, install, watch.
-- Edit the rules below; a rule matches a program name (first word, or the
-- word after npx/npm exec/python -m) or a Lua pattern on the whole command.
local rules = {
  { tag = "test",
    programs = { "jest", "vitest", "mocha", "pytest", "busted", "rspec", "phpunit", "ctest", "tox", "ava" },
    patterns = { "%f[%w]go test", "cargo test", "npm t%f[%W]", "npm run test", "npm test", "yarn test",
                 "pnpm test", "make test", "make check", "%-m pytest", "%-m unittest", "bun test" } },
  { tag = "server",
    programs = { "vite", "nodemon", "uvicorn", "gunicorn", "serve", "http-server", "caddy", "nginx", "redis-server" },
    patterns = { "npm run dev", "npm start", "npm run start", "npm run serve", "yarn dev", "yarn start",
                 "pnpm dev", "pnpm start", "bun dev", "bun run dev", "next dev", "next start", "rails s%f[%W]",
                 "rails server", "http%.server", "flask run", "manage%.py runserver", "webpack serve",
                 "php %-S", "hugo server", "jekyll serve" } },
  { tag = "build",
    programs = { "make", "cmake", "ninja", "tsc", "webpack", "gradle", "mvn", "bazel", "esbuild", "rollup" },
    patterns = { "cargo build", "go build", "npm run build", "yarn build", "pnpm build", "bun run build",
                 "docker build", "next build" } },
  { tag = "install",
    patterns = { "npm install", "npm i%f[%W]", "npm ci", "yarn install", "pnpm install", "pip3? install",
                 "apt%-get install", "apt install", "bundle install", "cargo fetch", "go mod download",
                 "poetry install", "uv sync", "bun install" } },
  { tag = "watch",
    patterns = { "%-%-watch", "%f[%w]watch ", "%-w%f[%W]", "nodemon", "entr " } },
}

local function program(words)
  local i = 1
  while words[i] and (words[i]:find("=", 1, true) or words[i] == "env" or words[i] == "exec") do i = i + 1 end
  local first = words[i] or ""
  if first == "npx" or first == "bunx" or (first == "npm" and words[i + 1] == "exec") then
    first = words[i + (first == "npm" and 2 or 1)] or ""
  elseif first:match("^python") and words[i + 1] == "-m" then
    first = words[i + 2] or ""
  end
  return (first:match("([^/]+)$") or first)
end

return {
  name = "autotag",
  rules = rules,
  on_create = function(api, args)
    local line = args.command or table.concat(args.argv or {}, " ")
    local words = {}
    for w in line:gmatch("%S+") do words[#words + 1] = w end
    local prog = program(words)
    local have, add = {}, {}
    for _, t in ipairs(args.tags or {}) do have[tostring(t):lower()] = true end
    for _, rule in ipairs(rules) do
      local hit = false
      for _, p in ipairs(rule.programs or {}) do if prog == p then hit = true end end
      for _, pat in ipairs(rule.patterns or {}) do if not hit and line:find(pat) then hit = true end end
      if hit and not have[rule.tag] then
        have[rule.tag] = true
        add[#add + 1] = rule.tag
      end
    end
    if #add == 0 then return nil end
    local out = {}
    for k, v in pairs(args) do out[k] = v end
    local list = {}
    for _, t in ipairs(args.tags or {}) do list[#list + 1] = t end
    -- never past the engine's tag limit: the job would be refused
    local max = api and api.tag_policy.max_count or math.huge
    for _, t in ipairs(add) do
      if #list < max then list[#list + 1] = t end
    end
    out.tags = list
    return out
  end,
}
