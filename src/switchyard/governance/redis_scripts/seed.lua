-- Rebuild settled totals after Redis lost its state: set each bucket from the store, then the ready marker.
-- KEYS: [1] the ready marker, then one bucket per entry. ARGV: per bucket: usd, tokens, expire_at (0: never);
-- the last ARGV is 1 to set the marker (the final chunk), 0 otherwise.
for i = 2, #KEYS do
  local a = (i - 2) * 3 + 1
  redis.call('HSET', KEYS[i], 'su', ARGV[a], 'st', ARGV[a + 1])
  if tonumber(ARGV[a + 2]) > 0 then redis.call('EXPIREAT', KEYS[i], ARGV[a + 2]) end
end
if ARGV[#ARGV] == '1' then redis.call('SET', KEYS[1], '1') end
return #KEYS - 1
