"""What a run writes: its folder, metrics, checkpoints, image outputs."""
