"""Checkpoints to models: the one place a vgs checkpoint becomes a module (below prepare/generate/train/metrics/official)."""
