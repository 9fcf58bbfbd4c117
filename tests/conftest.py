"""Make the test helpers in tests/ (e.g. `from tiny import ...`) importable; run tests on one thread."""
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from reward_files import reward_file  # noqa: E402,F401 (a fixture shared by two test files)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from a second thread, and lose a lot when other jobs keep the cores busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def any_tiny_path(request, tmp_path_factory):
    """Llama (rotary positions) and GPT-2 (absolute positions, which expose wrong position ids; its default
    config has dropout 0.1 inside attention and MLP modules)."""
    from tiny import save_tiny_causal_lm, save_tiny_gpt2

    if request.param == "llama":
        return save_tiny_causal_lm(tmp_path_factory.mktemp("lm") / "llama")
    return save_tiny_gpt2(tmp_path_factory.mktemp("lm") / "gpt2")
