-- Raise settled totals that are below the store's (a bucket evicted, or Redis restored from an old snapshot).
-- Never lowers: the store lags Redis by the spool, so the larger of the two is the better count.
-- KEYS: buckets. ARGV: per bucket: usd, tokens, expire_at (0: never). Returns how many buckets were raised.
local raised = 0
for i = 1, #KEYS do
  local a = (i - 1) * 3 + 1
  local h = redis.call('HMGET', KEYS[i], 'su', 'st')
  local su, st = tonumber(h[1] or '0'), tonumber(h[2] or '0')
  local u, t = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  if su < u or st < t then
    local fresh = redis.call('EXISTS', KEYS[i]) == 0
    if su < u then redis.call('HSET', KEYS[i], 'su', ARGV[a]) end
    if st < t then redis.call('HSET', KEYS[i], 'st', ARGV[a + 1]) end
    if fresh and tonumber(ARGV[a + 2]) > 0 then redis.call('EXPIREAT', KEYS[i], ARGV[a + 2]) end
    raised = raised + 1
  end
end
return raised
