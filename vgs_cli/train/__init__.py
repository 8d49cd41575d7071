"""Training: one shared trainer (`trainer.py`) and a small task object per stage."""
