-- Settle one request: release what it held and add what it really cost. Idempotent: a retried settlement (after
-- an ambiguous failure) finds its hold gone from both sets and changes nothing.
--
-- KEYS: per budget: bucket, holds, expired; per tpm limit: log, sum; per concurrency limit: in-flight.
-- ARGV: rid, nb, nt, nc, reserved (0: the request passed unchecked, fail-open: charge it without a hold), then
--       per budget: usd held, tokens held, usd spent, tokens spent, expire_at (0: never); per tpm: tokens counted
--       at admission, real tokens.
-- Returns, per budget: counted (1/0), su, st (the settled totals afterwards).

local rid = ARGV[1]
local nb, nt, nc = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local reserved = ARGV[5] == '1'
local function int(x) return string.format('%.0f', x) end

local out = {}
local k, a = 1, 6
for i = 1, nb do
  local bucket, holds, expired = KEYS[k], KEYS[k + 1], KEYS[k + 2]
  local hu, ht, u, tk = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local expire_at = tonumber(ARGV[a + 4])
  local member = rid .. '|' .. hu .. '|' .. ht
  local counted = 0
  if not reserved then
    counted = 1
  elseif redis.call('ZREM', holds, member) == 1 then
    redis.call('HINCRBY', bucket, 'ru', '-' .. hu)
    redis.call('HINCRBY', bucket, 'rt', '-' .. ht)
    counted = 1
  elseif redis.call('ZREM', expired, member) == 1 then
    counted = 1  -- its lease ran out first: the hold was already released, the spend still counts
  end
  if counted == 1 then
    redis.call('HINCRBY', bucket, 'su', u)
    redis.call('HINCRBY', bucket, 'st', tk)
    if expire_at > 0 then redis.call('EXPIREAT', bucket, expire_at) end
  end
  local h = redis.call('HMGET', bucket, 'su', 'st')
  out[#out + 1] = counted
  out[#out + 1] = tonumber(h[1] or '0')
  out[#out + 1] = tonumber(h[2] or '0')
  k, a = k + 3, a + 5
end

for i = 1, nt do
  local log, sum = KEYS[k], KEYS[k + 1]
  local est, real = ARGV[a], tonumber(ARGV[a + 1])
  local score = redis.call('ZSCORE', log, rid .. '|' .. est)
  if score then
    redis.call('ZREM', log, rid .. '|' .. est)
    redis.call('ZADD', log, score, rid .. '|' .. int(real))
    redis.call('INCRBY', sum, int(real - tonumber(est)))
  end
  k, a = k + 2, a + 2
end

for i = 1, nc do
  redis.call('ZREM', KEYS[k], rid)
  k = k + 1
end
return out
