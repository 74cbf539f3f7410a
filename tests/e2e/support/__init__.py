"""Exactly-once harness: the service as real processes, and the checker that judges them."""
