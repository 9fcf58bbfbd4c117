"""`training.release_freed_memory`: glibc's heap keeps freed tensors (resident memory stays high)
unless the mmap threshold is fixed, and the trainer fixes it only when asked, on CPU."""
import ctypes
import subprocess
import sys
import textwrap

import pytest

from rebel_rl.training import allocator


def glibc() -> bool:
    try:
        return hasattr(ctypes.CDLL("libc.so.6"), "mallopt")
    except OSError:
        return False


# A fresh process: a freed 4 MiB tensor raises glibc's threshold, then 100 tensors of 4 MiB are
# made and all but the last freed; the last one pins the heap's top, so what was freed below it
# stays resident unless each tensor had its own map. Prints the resident MB after the frees.
FRAGMENTS = textwrap.dedent("""
    import sys, torch
    from rebel_rl.training.allocator import release_freed_memory
    if sys.argv[1] == "1":
        assert release_freed_memory()
    def rss_mb():
        return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2 ** 20
    torch.ones(1 << 20)  # 4 MiB, freed at once
    before = rss_mb()
    tensors = [torch.ones(1 << 20) for _ in range(100)]
    del tensors[:-1]
    print(rss_mb() - before)
""")


def resident_growth_mb(fixed: bool) -> float:
    done = subprocess.run([sys.executable, "-c", FRAGMENTS, "1" if fixed else "0"],
                          capture_output=True, text=True, check=True)
    return float(done.stdout.split()[-1])


@pytest.mark.skipif(not glibc(), reason="the mmap threshold is glibc's")
def test_freed_tensors_leave_resident_memory_only_with_the_threshold_fixed():
    assert resident_growth_mb(fixed=False) > 300  # 99 freed tensors of 4 MiB still resident
    assert resident_growth_mb(fixed=True) < 50  # each was unmapped when freed


def test_the_option_acts_on_cpu_runs_only(monkeypatch):
    calls = []
    monkeypatch.setattr(allocator, "release_freed_memory", lambda: calls.append(1) or True)

    class Training:
        release_freed_memory = True

    allocator.apply_memory_options(Training, "cuda")
    assert calls == []
    allocator.apply_memory_options(Training, "cpu")
    assert calls == [1]
    Training.release_freed_memory = False
    allocator.apply_memory_options(Training, "cpu")
    assert calls == [1]


def test_without_glibc_it_warns_and_does_nothing(monkeypatch):
    def missing(name):
        raise OSError(name)

    monkeypatch.setattr(allocator.ctypes, "CDLL", missing)
    with pytest.warns(UserWarning, match="needs glibc"):
        assert allocator.release_freed_memory() is False
