"""Several nodes as one mirror: membership, blob ownership, cluster-wide jobs, peers."""
