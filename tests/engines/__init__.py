"""Real engines the tests and benchmarks start on loopback (PostgreSQL, SeaweedFS), and
a relay that can go silent between a client and one of them (a network partition)."""
