-- busted output handler: the usual terminal report, then one line
-- "N passed, N failed" (failures and errors) that .ci/run collects.
return function(options)
  local busted = require "busted"
  local handler = require "busted.outputHandlers.utfTerminal"(options)
  local subscribe = handler.subscribe
  function handler:subscribe(opts)
    subscribe(self, opts)
    busted.subscribe({ "suite", "end" }, function()
      io.write(("%d passed, %d failed\n"):format(handler.successesCount,
        handler.failuresCount + handler.errorsCount))
      io.flush()
      return nil, true
    end)
  end
  return handler
end
