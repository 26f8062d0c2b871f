-- Extend the leases of holds still in flight (on Redis's clock). Holds that already expired stay expired (XX).
-- KEYS: sorted sets (budget holds or in-flight sets); ARGV: lease_ms, then one member per key.
local t = redis.call('TIME')
local until_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], 'XX', until_ms, ARGV[i + 1])
end
return #KEYS
