"""The stages before and beside RL: SFT, reward and preference models, offline DPO."""
