"""Model loading that several stages share, below the policies: where a model comes from
(`pretrained.py`: local path, hub id, or the offline built-in SmolLM2), the built-in model registry
tasks register into (`builtin.py`, `builtin:NAME`), models trained from scratch (`scratch.py`, for
SFT), and PPO's value model (`value.py`). Importing this package loads nothing heavy (the tasks
register models here when `rebel_rl` is imported).
"""
