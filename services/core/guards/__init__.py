"""Guards in front of every downstream call: circuit breakers and cluster-wide rate limits.

Both keep their state in Redis, so every worker process of every pod sees the same breaker
and draws from the same rate budget.
"""
