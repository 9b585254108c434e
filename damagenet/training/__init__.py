"""Training: the loop, its options and the per-epoch log."""
