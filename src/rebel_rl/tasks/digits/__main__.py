"""`python -m rebel_rl.tasks.digits [grid.png]`: pre-train the denoiser (if needed) and write a grid
of samples."""
import sys
import time

import torch

from rebel_rl.tasks.digits.denoiser import _log
from rebel_rl.tasks.digits.plots import save_sample_grid
from rebel_rl.tasks.digits.policy import load_digits_policy

if __name__ == "__main__":
    torch.set_num_threads(1)
    out = sys.argv[1] if len(sys.argv) > 1 else "digits_pretrained.png"
    started = time.perf_counter()
    policy = load_digits_policy(use_lora=False)
    _log(f"wrote {save_sample_grid(policy, out)} ({time.perf_counter() - started:.0f}s in all)")
