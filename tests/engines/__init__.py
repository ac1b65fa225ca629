"""Real engines the tests start on loopback (PostgreSQL)."""
