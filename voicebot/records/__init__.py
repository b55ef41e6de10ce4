"""Call records: calls, turns with per-stage timings, and queue-log style events."""
