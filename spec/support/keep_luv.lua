-- Run by busted before any spec file (.busted's `helper`). luv keeps its
-- loop in the table the first `require "luv"` returns; busted unloads the
-- modules a spec file loaded once it is done, and when that table is then
-- collected, the next luv handle crashes the run. Loaded here, before the
-- files, luv stays loaded for the whole run.
require "luv"
