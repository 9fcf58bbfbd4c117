"""Seconds per iteration of the demo (SmolLM2-135M-Instruct, LoRA r=16, `rebel train`'s defaults)
sampled three ways: a colocated vLLM engine (sync), a `rebel vllm-serve` server (sync), and the
server with `async_rollouts: 1`, where it draws batch t+1 while the trainer runs update t
(docs/scaling.md). Two cores for each: colocated, one process on both; server, the server pinned to
one core with one thread (taskset), the trainer to the other. Writes docs/benchmark_async.md.

    .venv-vllm/bin/python benchmarks/async_rollouts.py [--iterations 4]   # needs a quiet machine
    .venv-vllm/bin/python benchmarks/async_rollouts.py --smoke  # the tiny test model, 2 iterations

Each mode runs in its own process (`--child`), so one engine's thread settings do not reach the
next; the first iteration is a warm-up and not counted.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
MODES = {  # name: (generation_backend, async_rollouts)
    "colocated vllm, sync": ("vllm", 0),
    "vllm_server, sync": ("vllm_server", 0),
    "vllm_server, async": ("vllm_server", 1),
}
PHASES = ["sampling", "logprobs", "scoring", "sampling_ahead", "update"]
SMOKE_PROMPTS = ["the movie was", "tell me about your weekend", "i feel", "the sea is"]


def run_options(args, workdir: Path) -> dict:
    """The run's config fields: the demo's defaults, or the tiny model's smoke shape."""
    if not args.smoke:
        return dict(num_iterations=args.iterations + 1, eval_prompts=0, progress=False,
                    tensorboard=False, mixed_precision="no", vllm_kv_cache_gb=1)
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny import save_tiny_causal_lm, write_jsonl

    model = save_tiny_causal_lm(workdir / "tiny", hidden_size=64, num_attention_heads=2,
                                num_key_value_heads=1)
    prompts = write_jsonl(workdir / "prompts.jsonl", [{"prompt": p} for p in SMOKE_PROMPTS])
    return dict(model_name_or_path=str(model), dataset=prompts, rewards=["length"],
                num_iterations=args.iterations + 1, prompts_per_iteration=2, num_generations=2,
                minibatch_prompts=2, max_new_tokens=8, lora_r=4, eval_prompts=0, progress=False,
                tensorboard=False, mixed_precision="no", vllm_kv_cache_gb=0.25)


def child(spec_file: str) -> None:
    """One mode's run (in this process): its per-iteration seconds and phases, as JSON."""
    import torch

    from rebel_rl import RebelConfig
    from rebel_rl.training.online.loop import RebelTrainer

    spec = json.loads(Path(spec_file).read_text())
    torch.set_num_threads(spec["threads"])
    trainer = RebelTrainer(RebelConfig(**spec["options"]))
    rows = []
    for _ in range(spec["options"]["num_iterations"]):
        start = time.perf_counter()
        metrics = trainer.step()[0]
        rows.append({"seconds": time.perf_counter() - start,
                     **{p: metrics.get(f"time/{p}", 0.0) for p in PHASES}})
    print("RESULT " + json.dumps(rows[1:]), flush=True)


def pinned(cores: str) -> list[str]:
    """`taskset -c CORES` where taskset exists and the machine has the cores, else nothing."""
    enough = os.cpu_count() and os.cpu_count() >= 2
    return ["taskset", "-c", cores] if shutil.which("taskset") and enough else []


def environment(threads: int) -> dict:
    return {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": str(threads),
            "TOKENIZERS_PARALLELISM": "false"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model: str, kv_cache_gb: float, log: Path) -> tuple[subprocess.Popen, str]:
    """`rebel vllm-serve` on core 0 with one thread, once it answers /health."""
    port = free_port()
    command = [*pinned("0"), sys.executable, "-m", "rebel_rl.cli", "vllm-serve", "--model", model,
               "--port", str(port), "--kv_cache_gb", str(kv_cache_gb)]
    process = subprocess.Popen(command, env=environment(1), stdout=log.open("w"),
                               stderr=subprocess.STDOUT)
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 900
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"rebel vllm-serve exited: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url + "/health", timeout=2).read()
            return process, url
        except OSError:
            time.sleep(2)
    process.kill()
    raise SystemExit("rebel vllm-serve did not answer within 900 s")


def measure(mode: str, options: dict, workdir: Path) -> list[dict]:
    """The per-iteration rows of one mode, run in a child process (and a server for its modes)."""
    backend, async_rollouts = MODES[mode]
    options = {**options, "generation_backend": backend, "async_rollouts": async_rollouts,
               "output_dir": str(workdir / f"run-{backend}-{async_rollouts}")}
    server = None
    if backend == "vllm_server":
        from rebel_rl.models.pretrained import resolve_model_path

        model = resolve_model_path(options.get("model_name_or_path",
                                               "builtin:smollm2-135m-instruct"))
        server, options["vllm_server_url"] = start_server(
            str(model), options["vllm_kv_cache_gb"], workdir / "server.log")
    threads, cores = (1, "1") if server else (2, "0,1")
    spec = workdir / "spec.json"
    spec.write_text(json.dumps({"options": options, "threads": threads}))
    try:
        done = subprocess.run([*pinned(cores), sys.executable, __file__, "--child", str(spec)],
                              env=environment(threads), capture_output=True, text=True)
    finally:
        if server is not None:
            server.kill()
            server.wait()
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise SystemExit(f"{mode} failed: {done.stdout[-2000:]}{done.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def report(results: dict, args, loads: list[float]) -> str:
    """The markdown page: a row per mode, medians over the counted iterations."""
    rows = ["| mode | seconds per iteration | sampling s | sampling ahead s (start + wait) | "
            "update s | load average (1 min) before |", "|---|---|---|---|---|---|"]
    for (mode, runs), load in zip(results.items(), loads):
        median = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        rows.append(f"| {mode} | {median['seconds']:.2f} | {median['sampling']:.2f} | "
                    f"{median['sampling_ahead']:.2f} | {median['update']:.2f} | {load:.1f} |")
    shape = ("the tiny test model (`--smoke`: checks the script, not a measurement)" if args.smoke
             else "SmolLM2-135M-Instruct, LoRA r=16, fp32, the demo's batch (8 prompts x 4, 48 "
                  "new tokens)")
    command = "benchmarks/async_rollouts.py" + (" --smoke" if args.smoke else "")
    return (f"# Async rollouts: seconds per iteration\n\n{shape}; medians of {args.iterations} "
            f"iterations after a warm-up; {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} cores; colocated: one process, 2 threads on cores 0-1; server: "
            "`rebel vllm-serve` on core 0 with 1 thread, the trainer on core 1 with 1 thread"
            f"{'' if pinned('0') else ' (not pinned: no taskset or one core)'}. "
            f"`.venv-vllm/bin/python {command}`.\n\n" + "\n".join(rows) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=4, help="counted iterations per mode")
    parser.add_argument("--smoke", action="store_true", help="the tiny model: a check, not a run")
    parser.add_argument("--output", default=None,
                        help="where to write (default docs/benchmark_async.md; none for --smoke)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child)
    if args.smoke:
        args.iterations = min(args.iterations, 2)
    sys.path.insert(0, str(SRC))
    results, loads = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        options = run_options(args, Path(tmp))
        for mode in MODES:
            print(f"measuring {mode} ...", file=sys.stderr, flush=True)
            loads.append(os.getloadavg()[0])  # a shared machine: the contention each row saw
            results[mode] = measure(mode, options, Path(tmp))
    text = report(results, args, loads)
    output = args.output or (None if args.smoke else ROOT / "docs" / "benchmark_async.md")
    if output:  # a smoke run writes only where asked: its table measures nothing
        Path(output).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
