"""Node executors: the contract (base), the trainer's machine (local), remote nodes (ssh),
and which one a node gets (factory)."""
