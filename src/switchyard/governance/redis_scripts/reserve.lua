-- Reserve one request against every budget and rate limit in its scope, or against none of them.
--
-- KEYS: [1] the ready marker (absent: Redis lost its state; the ledger rebuilds it from the store first), then
--       per budget: bucket (hash su st ru rt), holds (zset "rid|usd|tokens" -> expiry ms), expired (zset);
--       per rpm limit: log (zset rid -> ms); per tpm limit: log (zset "rid|tokens" -> ms), sum (string);
--       per concurrency limit: in-flight (zset rid -> expiry ms).
-- ARGV: rid, lease_ms, nb, nr, nt, nc, then per budget: limit_usd (-1: none), limit_tokens (-1), usd, tokens,
--       expire_at (epoch s, 0: never); per rpm: limit; per tpm: limit, tokens; per concurrency: limit.
-- Returns {"ok"} | {"rebuild"} | {"budget", i, su, st, ru, rt} | {"rpm", i, retry_ms}
--       | {"tpm", i, retry_ms, used} | {"concurrent", i, retry_ms}
-- Money is integer units of 1e-8 USD. Time is Redis's own clock, so replicas need no synchronised clocks.

if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'rebuild'}
end

local WINDOW = 60000
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rid = ARGV[1]
local lease = tonumber(ARGV[2])
local nb, nr, nt, nc = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])

local function int(x) return string.format('%.0f', x) end

-- Release holds whose lease ran out (their replica died, or lost Redis for longer than a lease); keep them an
-- hour in the expired set, so that a late settlement still counts its spend exactly once.
local function purge_holds(bucket, holds, expired)
  local gone = redis.call('ZRANGEBYSCORE', holds, '-inf', now)
  if #gone == 0 then return end
  local du, dt = 0, 0
  for _, m in ipairs(gone) do
    local u, tk = string.match(m, '|(%d+)|(%d+)$')
    du = du + tonumber(u)
    dt = dt + tonumber(tk)
    redis.call('ZADD', expired, now, m)
  end
  redis.call('ZREMRANGEBYSCORE', holds, '-inf', now)
  redis.call('ZREMRANGEBYSCORE', expired, '-inf', now - 3600000)
  redis.call('PEXPIRE', expired, 7200000)
  redis.call('HINCRBY', bucket, 'ru', int(-du))
  redis.call('HINCRBY', bucket, 'rt', int(-dt))
end

local k, a = 2, 7
local budgets = {}
for i = 1, nb do
  local bucket, holds, expired = KEYS[k], KEYS[k + 1], KEYS[k + 2]
  purge_holds(bucket, holds, expired)
  local h = redis.call('HMGET', bucket, 'su', 'st', 'ru', 'rt')
  local su, st = tonumber(h[1] or '0'), tonumber(h[2] or '0')
  local ru, rt = tonumber(h[3] or '0'), tonumber(h[4] or '0')
  local lu, lt = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  local u, tk = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  if (lu >= 0 and (su >= lu or su + ru + u > lu)) or (lt >= 0 and (st >= lt or st + rt + tk > lt)) then
    return {'budget', i, su, st, ru, rt}
  end
  budgets[i] = {bucket, holds, u, tk, tonumber(ARGV[a + 4])}
  k, a = k + 3, a + 5
end

local rpm = {}
for i = 1, nr do
  local log, limit = KEYS[k], tonumber(ARGV[a])
  redis.call('ZREMRANGEBYSCORE', log, '-inf', now - WINDOW)
  local n = redis.call('ZCARD', log)
  if n >= limit then
    local edge = redis.call('ZRANGE', log, n - limit, n - limit, 'WITHSCORES')
    return {'rpm', i, tonumber(edge[2]) + WINDOW - now}
  end
  rpm[i] = log
  k, a = k + 1, a + 1
end

local tpm = {}
for i = 1, nt do
  local log, sum = KEYS[k], KEYS[k + 1]
  local limit, est = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  local gone = redis.call('ZRANGEBYSCORE', log, '-inf', now - WINDOW)
  if #gone > 0 then
    local d = 0
    for _, m in ipairs(gone) do d = d + tonumber(string.match(m, '|(%d+)$')) end
    redis.call('ZREMRANGEBYSCORE', log, '-inf', now - WINDOW)
    redis.call('DECRBY', sum, int(d))
  end
  local used = tonumber(redis.call('GET', sum) or '0')
  if used > 0 and used + est > limit then
    local left, wait = used, WINDOW
    local entries = redis.call('ZRANGE', log, 0, -1, 'WITHSCORES')
    for j = 1, #entries, 2 do
      left = left - tonumber(string.match(entries[j], '|(%d+)$'))
      if left == 0 or left + est <= limit then
        wait = tonumber(entries[j + 1]) + WINDOW - now
        break
      end
    end
    return {'tpm', i, wait, used}
  end
  tpm[i] = {log, sum, est}
  k, a = k + 2, a + 2
end

local conc = {}
for i = 1, nc do
  local set, limit = KEYS[k], tonumber(ARGV[a])
  redis.call('ZREMRANGEBYSCORE', set, '-inf', now)
  if redis.call('ZCARD', set) >= limit then
    return {'concurrent', i, 1000}
  end
  conc[i] = set
  k, a = k + 1, a + 1
end

-- every check passed: take them all
for _, b in ipairs(budgets) do
  local bucket, holds, u, tk, expire_at = b[1], b[2], b[3], b[4], b[5]
  redis.call('ZADD', holds, now + lease, rid .. '|' .. int(u) .. '|' .. int(tk))
  redis.call('HINCRBY', bucket, 'ru', int(u))
  redis.call('HINCRBY', bucket, 'rt', int(tk))
  if expire_at > 0 then
    redis.call('EXPIREAT', bucket, expire_at)
    redis.call('EXPIREAT', holds, expire_at)
  end
end
for _, log in ipairs(rpm) do
  redis.call('ZADD', log, now, rid)
  redis.call('PEXPIRE', log, WINDOW + 1000)
end
for _, x in ipairs(tpm) do
  redis.call('ZADD', x[1], now, rid .. '|' .. int(x[3]))
  redis.call('INCRBY', x[2], int(x[3]))
  redis.call('PEXPIRE', x[1], WINDOW + 1000)
  redis.call('PEXPIRE', x[2], WINDOW + 1000)
end
for _, set in ipairs(conc) do
  redis.call('ZADD', set, now + lease, rid)
  redis.call('PEXPIRE', set, lease + 60000)
end
return {'ok'}
