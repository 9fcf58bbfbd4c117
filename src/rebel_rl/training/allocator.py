"""Give freed CPU tensor memory back to the system (`training.release_freed_memory`).

glibc's malloc serves a request below its mmap threshold from its heap, and raises the threshold
to the size of every mapped block that is freed (up to 32 MiB). After the first few, the tensors
of a forward and backward at long completions (1 to 32 MiB each) all come from the heap, and
what they free stays in it, fragmented: the process's resident memory grows to several times
what is alive at once. Measured on SmolLM2-135M + LoRA, one checkpointed forward and backward of
4 rows x 1,061 tokens: peak RSS 5.29 GB, against 1.53 GB with the threshold fixed at 1 MiB
(docs/long_completions.md). Fixing it (mallopt M_MMAP_THRESHOLD, which also ends glibc's
adjustment) maps each such tensor on its own and unmaps it when it is freed. The price is the
kernel's page faults and zeroing of fresh pages at each allocation, so it is an option.

The setting is process-wide and stays for the process's life. Only glibc has it: elsewhere
(macOS, musl, Windows) the option warns once and does nothing.
"""
from __future__ import annotations

import ctypes
import warnings

M_MMAP_THRESHOLD = -3  # glibc's <malloc.h>
THRESHOLD_BYTES = 1 << 20  # tensors of 1 MiB and more: measured to give the whole saving


def release_freed_memory(threshold: int = THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap threshold at `threshold` bytes; False (and a warning) where the C library
    is not glibc or refuses it."""
    try:
        accepted = bool(ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, threshold))
    except (OSError, AttributeError):
        accepted = False
    if not accepted:
        warnings.warn("release_freed_memory needs glibc (Linux); this C library has no "
                      "M_MMAP_THRESHOLD, so freed memory stays with the process", stacklevel=2)
    return accepted


def apply_memory_options(training, device_type: str) -> None:
    """`training.release_freed_memory` for a run whose tensors live in this process's CPU memory
    (on a GPU the tensors are CUDA's, and its caching allocator already reuses them)."""
    if training.release_freed_memory and device_type == "cpu":
        release_freed_memory()
