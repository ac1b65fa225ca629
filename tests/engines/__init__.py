"""Real storage engines on loopback for the tests and the benchmark (SeaweedFS)."""
