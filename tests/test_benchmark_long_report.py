"""benchmarks/long_completions.py's page: targets marked met / not met from the measured numbers,
and every row without numbers marked as not measured."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import long_completions as bench  # noqa: E402


def row(seconds: float, rss: float, length: float) -> dict:
    return {"seconds": seconds, "sampling": 1.0, "logprobs": 1.0, "update": 1.0,
            "mean_length": length, "peak_rss_gb": rss, "load": (1.0, 1.0)}


def test_targets_follow_the_numbers_and_unmeasured_rows_say_so():
    results = {(n, side): None for n in bench.LENGTHS for side in ("hf", "vllm", "trl")}
    results[(128, "hf")] = row(32 * 128 * 0.01, 2.0, 128)  # 10 ms per token
    results[(1024, "hf")] = row(32 * 1024 * 0.016, 3.9, 1024)  # 16 ms: 1.6x, over 1.5x
    results[(1024, "trl")] = row(32 * 1024 * 0.03, 8.0, 1024)  # ours 0.53x its time, 0.49x RSS
    page = bench.report(results, smoke=True)
    assert "**Partial run.**" in page
    assert "peak RSS <= 4 GB at 1024 tokens (hf): met" in page
    assert "peak RSS <= 6 GB at 2048 tokens (hf): not measured" in page
    assert "s/token at 1024 <= 1.5x that at 128 (hf): not met" in page
    assert "<= 0.6x TRL's time at 1024: met" in page
    assert "<= 0.5x TRL's peak RSS at 1024: met" in page
    assert "<= 0.6x TRL's time at 512: not measured" in page
    assert page.count("not yet measured") == 12 - 3
    assert "| 1024 | hf | 1.0 | 1.0 | 1.0 | 524.3 | 16.00 ms | 1024 | 3.90 |" in page
    assert "Measured rows: 128 tokens hf, 1024 tokens hf, 1024 tokens trl" in page.replace("\n", " ")
    results[(1024, "hf")] = row(32 * 1024 * 0.014, 4.1, 1024)
    page = bench.report(results, smoke=False)
    assert "at 1024 tokens (hf): not met" in page and "128 (hf): met" in page
    assert "Partial run" not in page
