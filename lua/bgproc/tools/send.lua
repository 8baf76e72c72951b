-- sendBackgroundProcessInput: write to a job's stdin, maybe close it.
local common = require "bgproc.tools.common"
local errors = require "bgproc.lib.errors"

local send = {
  name = "sendBackgroundProcessInput",
  description = "Write text to a background process's stdin (start it with stdin: \"pipe\" or "
    .. "pty: true). eof: true closes stdin after the text (on a pty: sends Ctrl-D).",
  inputSchema = common.object {
    processId = common.ID, taskId = common.TASK_ID,
    input = { type = "string", maxLength = 16 * 1024 * 1024 },
    eof = { type = "boolean" },
  },
  cli = {
    { "eof", "--eof", "Close stdin afterwards." },
  },
}

function send.handler(engine, args, ctx)
  local rec, err = common.lookup(engine, args, ctx)
  if not rec then return nil, err end
  if args.input == nil and not args.eof then
    return errors.fail("invalid_argument", "give 'input', 'eof': true, or both")
  end
  local bytes
  bytes, err = engine:write_input(rec, args.input, args.eof)
  if not bytes then return nil, err end
  local r = engine:public(rec)
  r.bytes, r.eof = bytes, args.eof == true
  return r
end

function send.text(r)
  return ("sent %s bytes to %s%s"):format(common.int(r.bytes), r.id, r.eof and ", stdin closed" or "")
end

return send
