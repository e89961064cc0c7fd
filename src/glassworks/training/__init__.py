"""Training machinery around Lightning: atomic checkpoints and exact resumption."""
