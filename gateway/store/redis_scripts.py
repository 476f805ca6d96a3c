"""The Lua scripts that make the Redis store's counters atomic across instances.

Each runs whole inside Redis, so concurrent instances can neither both take the
last slot nor both pass the limit. Time is Redis' `TIME` (milliseconds), which
every instance shares whatever its own clock says; Redis 7 replicates a
script's effects, not the script, so reading the clock in one is allowed.
"""

from __future__ import annotations

NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# Sliding-window log. KEYS[1] the user's log; ARGV limit, window (ms), a unique
# member. Returns {allowed, remaining, retry_after_ms}. A denied hit is not
# logged, so a client that hammers does not push its own reopening back.
RATE_LIMIT = (
    NOW_MS
    + """
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return {1, limit - count - 1, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local retry = window
if oldest[2] then retry = tonumber(oldest[2]) + window - now end
return {0, 0, retry}
"""
)

# Stream leases. KEYS[1] the user's leases (member -> expiry ms); ARGV limit,
# ttl (ms), then one lease id per stream wanted (a request with n choices takes
# n, all or none). Expired leases (their holder died) are dropped first.
ACQUIRE_STREAM = (
    NOW_MS
    + """
local ttl = tonumber(ARGV[2])
local wanted = #ARGV - 2
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) + wanted > tonumber(ARGV[1]) then return 0 end
for i = 3, #ARGV do
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
"""
)

# Push the expiry of leases this instance still holds; XX never revives a lease
# that expired or vanished (Redis restarted without persistence).
RENEW_STREAMS = (
    NOW_MS
    + """
local ttl = tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], 'XX', now + ttl, ARGV[i])
end
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
"""
)

# Revoked single tokens. KEYS[1] the set (jti -> expiry, unix s); ARGV now (unix
# s, the writer's clock, as readers compare with theirs), jti, expiry, grace (s).
# Expired members are pruned, and the key itself expires with its latest member
# plus `grace` (clocks that disagree with Redis'), so no revocation outlives the
# token it revokes and none is dropped before it.
REVOKE_TOKEN = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('EXPIREAT', KEYS[1], math.ceil(tonumber(last[2]) + tonumber(ARGV[4])))
return 1
"""
