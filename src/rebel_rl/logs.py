"""What the libraries we drive may print: the terminal is kept for our progress bar and error
lines."""
from __future__ import annotations


def quiet_libraries() -> None:
    """Keep the terminal for our progress bar: library warnings at error level only."""
    import os
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # C++ warnings logged by torch and by extensions (vLLM's CPU kernels: "NUMA binding: Using
    # MEMBIND policy ..."); read when torch loads, which the CLI does after this.
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    import datasets
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    # datasets draws "Generating train split" bars on stderr, which must hold only the `error:`
    # line.
    datasets.disable_progress_bars()
    # its "Failed to load JSON" error lines too
    datasets.utils.logging.set_verbosity(datasets.logging.CRITICAL)
