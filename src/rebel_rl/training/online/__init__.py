"""The online loop: sample, score, update; the objectives and their registry entries."""
