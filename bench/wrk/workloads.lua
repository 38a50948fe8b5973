-- wrk script for the authserver benchmark (bench/run.py writes the inputs).
--
-- One script serves every workload so that the token handling, the status
-- counting and the report live in one place. bench/run.py sets, in the
-- environment of wrk:
--
--   BENCH_WORKLOAD     W0 .. W4 (see `builders` below)
--   BENCH_TOKENS       file with one token (access token, refresh token or
--                      authorization code) per line; empty for W0
--   BENCH_SINGLE_USE   "1" when a token may be sent only once (W3, W4)
--   BENCH_THREADS      number of wrk threads (to split the file between them)
--   BENCH_BASIC        "Basic <base64>" of the resource server (W1)
--   BENCH_CLIENT_FORM  "client_id=...&client_secret=..." already URL-encoded
--   BENCH_REDIRECT     the redirect URI, already URL-encoded (W4)
--
-- wrk gives every thread its own Lua state: setup() runs in the main state and
-- numbers the threads; init() then runs inside each thread and keeps only that
-- thread's share of the file (line i goes to thread i % threads), so no two
-- requests ever carry the same refresh token or code.

local workload = os.getenv("BENCH_WORKLOAD") or "W0"
local form = { ["Content-Type"] = "application/x-www-form-urlencoded" }

local builders = {
  W0 = function(_)
    return wrk.format("GET", "/healthz")
  end,
  W1 = function(token)
    return wrk.format("POST", "/oauth/introspect",
      { ["Content-Type"] = form["Content-Type"], ["Authorization"] = os.getenv("BENCH_BASIC") },
      "token=" .. token)
  end,
  W2 = function(token)
    return wrk.format("GET", "/ifttt/v1/user/info", { ["Authorization"] = "Bearer " .. token })
  end,
  -- IFTTT sends its client credentials in the form body (client_secret_post).
  W3 = function(token)
    return wrk.format("POST", "/oauth/token", form,
      "grant_type=refresh_token&refresh_token=" .. token .. "&" .. os.getenv("BENCH_CLIENT_FORM"))
  end,
  W4 = function(token)
    return wrk.format("POST", "/oauth/token", form,
      "grant_type=authorization_code&code=" .. token .. "&redirect_uri="
        .. os.getenv("BENCH_REDIRECT") .. "&" .. os.getenv("BENCH_CLIENT_FORM"))
  end,
}

local build = builders[workload]
if build == nil then
  error("unknown BENCH_WORKLOAD " .. workload)
end

-- Main state: the thread objects, so done() can collect their counters.
local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

-- Thread state from here on (globals, so that thread:get() can read them).
function init(args)
  tokens = {}
  sent = 0
  non2xx = 0
  statuses = {}
  exhausted = false
  single_use = os.getenv("BENCH_SINGLE_USE") == "1"
  local path = os.getenv("BENCH_TOKENS") or ""
  if path ~= "" then
    local count = tonumber(os.getenv("BENCH_THREADS"))
    local index = 0
    for line in io.lines(path) do
      if line ~= "" then
        if index % count == id then
          tokens[#tokens + 1] = line
        end
        index = index + 1
      end
    end
    if #tokens == 0 then
      error("thread " .. id .. " got no tokens from " .. path)
    end
  end
end

function request()
  if #tokens == 0 then
    return build(nil)
  end
  if single_use and sent >= #tokens then
    -- Out of fresh material: stop this thread instead of replaying a used
    -- token (which the server would rightly refuse and count as reuse).
    -- wrk still wants a request from us; this harmless one may go out while
    -- the thread winds down. The run is reported as "exhausted".
    if not exhausted then
      exhausted = true
      wrk.thread:stop()
    end
    return wrk.format("GET", "/healthz")
  end
  sent = sent + 1
  return build(tokens[(sent - 1) % #tokens + 1])
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    local key = tostring(status)
    statuses[key] = (statuses[key] or 0) + 1
  end
end

-- Main state again, after every thread finished: one JSON line for run.py.
function done(summary, latency, requests)
  local total_non2xx, used, any_exhausted = 0, 0, false
  local merged = {}
  for _, thread in ipairs(threads) do
    total_non2xx = total_non2xx + (thread:get("non2xx") or 0)
    used = used + (thread:get("sent") or 0)
    any_exhausted = any_exhausted or thread:get("exhausted") == true
    for status, count in pairs(thread:get("statuses") or {}) do
      merged[status] = (merged[status] or 0) + count
    end
  end
  local parts = {}
  for status, count in pairs(merged) do
    parts[#parts + 1] = string.format('"%s":%d', status, count)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"latency_us":{"p50":%d,"p99":%d,"mean":%.1f,"max":%d},'
      .. '"non2xx":%d,"statuses":{%s},"tokens_used":%d,"exhausted":%s}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean, latency.max,
    total_non2xx, table.concat(parts, ","), used, tostring(any_exhausted)))
end
