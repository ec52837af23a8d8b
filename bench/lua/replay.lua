-- wrk script for bench/small.py: send one pre-rendered HTTP request, byte for byte, on every
-- connection for the whole run, and print wrk's own figures as one JSON line at the end.
--
-- bench/small.py renders each case's request (method, path and query, Host, the SigV4 headers
-- or the presigned query, Content-Length, the 1 KiB body of a PUT) with s3shim's signer and
-- writes it to the file named by $SMALL_REQUEST. Signing once and replaying is valid within
-- the signature's clock skew (15 min) or the presigned URL's expiry, far longer than a case.
--
-- The request is static: wrk.init() asks wrk.format() for it once per thread and wrk reuses
-- that buffer, so no Lua runs per request (no request() or response() function is defined:
-- either would make wrk call into Lua for every request).

local path = os.getenv("SMALL_REQUEST")
if not path then
   error("SMALL_REQUEST (the file holding the request to replay) is not set")
end
local f = assert(io.open(path, "rb"))
local raw = f:read("*a")
f:close()

-- wrk.init() builds its one static request with wrk.format(); it gets the file as it is.
wrk.format = function()
   return raw
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'SMALL-RESULT {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
      '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
      '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "p999": %d, ' ..
      '"mean": %.1f, "min": %d, "max": %d}}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50.0), latency:percentile(90.0), latency:percentile(99.0),
      latency:percentile(99.9), latency.mean, latency.min, latency.max))
end
