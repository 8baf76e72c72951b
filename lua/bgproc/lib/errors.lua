-- Errors, in one table of codes. Codes are a contract.
--
-- A tool's failure is { code = ..., message = ... } with one of CODES;
-- over JSON-RPC it travels as error TOOL_ERROR with data.code. The
-- protocol's own failures use the RPC numbers.
local errors = {}

errors.CODES = {
  invalid_argument = "the arguments do not fit the tool's schema or policy",
  not_found = "no job or session with that id",
  conflict = "the job's state does not allow it (stdin closed, ...)",
  limit = "a configured limit was reached",
  spawn_failed = "the program could not be started",
  refused = "a plugin refused the request",
  cancelled = "the caller cancelled the request",
  internal = "a bug: reported, never hidden",
}

errors.RPC = {
  PARSE_ERROR = -32700,      -- not JSON
  INVALID_REQUEST = -32600,  -- JSON, not a request
  METHOD_NOT_FOUND = -32601,
  INVALID_PARAMS = -32602,
  INTERNAL_ERROR = -32603,
  TOOL_ERROR = -32000,       -- a tool failed: data.code is one of CODES
  PERMISSION_DENIED = -32001, -- the daemon belongs to another user
  NO_ANSWER = -32098,        -- the client gave up waiting (client side)
  DISCONNECTED = -32099,     -- no connection to the daemon (client side)
}

function errors.new(code, fmt, ...)
  assert(errors.CODES[code], "unknown error code: " .. tostring(code))
  local message = select("#", ...) > 0 and fmt:format(...) or fmt
  return { code = code, message = message }
end

-- return errors.fail("not_found", "no process '%s'", id)  -> nil, err
function errors.fail(code, fmt, ...)
  return nil, errors.new(code, fmt, ...)
end

return errors
