-- Tool errors: { code = ..., message = ... }. Codes are a contract:
--   invalid_argument  the arguments do not fit the tool's schema or policy
--   not_found         no job or session with that id
--   conflict          the job's state does not allow it (stdin closed, ...)
--   limit             a configured limit was reached
--   spawn_failed      the program could not be started
--   refused           a plugin refused the request
--   cancelled         the caller cancelled the request
--   internal          a bug: reported, never hidden
local errors = {}

function errors.new(code, fmt, ...)
  local message = select("#", ...) > 0 and fmt:format(...) or fmt
  return { code = code, message = message }
end

-- return errors.fail("not_found", "no process '%s'", id)  -> nil, err
function errors.fail(code, fmt, ...)
  return nil, errors.new(code, fmt, ...)
end

return errors
