-- post.lua: wrk script for run-bench.sh. POSTs one fixed Messages body to /v1/messages, or
-- (API "openai") one fixed Chat Completions body to /v1/chat/completions.
--
-- Usage: wrk ... URL -- BODY_FILE [anthropic|openai]
-- The body comes from a file that benchtool.py wrote, so wrk and the Python clients send the same
-- bytes. The request is built once in init(); because this script defines no request() function
-- wrk sends that prebuilt buffer without entering Lua per request. done() prints one line,
-- "BENCHJSON {...}", with the numbers run-bench.sh keeps (latencies in microseconds).

function init(args)
   local path = args[1]
   local api = args[2] or "anthropic"
   if path == nil or (api ~= "anthropic" and api ~= "openai") then
      io.stderr:write("post.lua: usage: wrk ... URL -- BODY_FILE [anthropic|openai]\n")
      os.exit(2)
   end
   local f = assert(io.open(path, "rb"))
   local body = f:read("*a")
   f:close()
   wrk.method = "POST"
   if api == "openai" then
      -- As the OpenAI SDK sends it: a bearer key, no anthropic-version. routerd ignores a key
      -- that is not sk-ant-... and uses its own.
      wrk.path = "/v1/chat/completions"
      wrk.body = body
      wrk.headers["content-type"] = "application/json"
      wrk.headers["authorization"] = "Bearer not-used"
      return
   end
   wrk.path = "/v1/messages"
   wrk.body = body
   wrk.headers["content-type"] = "application/json"
   wrk.headers["anthropic-version"] = "2023-06-01"
   -- The fake upstream wants an x-api-key; routerd ignores a key that is not sk-ant-... and uses
   -- its own (ANTHROPIC_API_KEY), so every target gets the same request bytes.
   wrk.headers["x-api-key"] = "not-used"
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency_us":{"min":%d,"mean":%.1f,"max":%d,"stdev":%.1f,' ..
      '"p50":%d,"p75":%d,"p90":%d,"p99":%d,"p999":%d}}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency.min, latency.mean, latency.max, latency.stdev,
      latency:percentile(50), latency:percentile(75), latency:percentile(90),
      latency:percentile(99), latency:percentile(99.9)))
end
