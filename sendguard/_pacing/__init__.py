"""Pacing: warmup ramps, rate shaping, the bounce and complaint breaker, retries."""
