"""Real engines the tests start on loopback (PostgreSQL), and a relay that can go
silent between a client and one of them (a network partition)."""
