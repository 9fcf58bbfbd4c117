"""`generation_backend: vllm_server`: `rebel vllm-serve` samples, the trainer sends it its weights.

The first tests need no vLLM (the trainer's side talks plain HTTP): a missing or unreachable server
is one line, and so is a server of another model (a stand-in server, stdlib http.server, that
answers /health and /model_info only). The rest start a real `rebel vllm-serve` (vLLM, so
`.venv-vllm/`; tests/test_vllm_env.py runs this file there) on a tiny model: the weights pushed give
the trainer's greedy tokens and a skipped push does not; several URLs give the samples of one; a
server killed mid-run stops the run with one line and `resume` continues once it is back.
"""
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

from rebel_rl import ConfigError, RebelConfig
from rebel_rl.cli import main
from rebel_rl.policies.causal_lm.policy import CausalLMPolicy
from rebel_rl.policies.factory import load_policy
from rebel_rl.policies.causal_lm.vllm.serve_app import model_signature
from rebel_rl.policies.causal_lm.vllm.server import check_servers
from stand_in_server import StandIn
from tiny import save_tiny_causal_lm, tiny_tokenizer, write_jsonl

PROMPTS = ["the movie was", "tell me about your weekend", "i feel",
           "write one sentence about the sea"]
VLLM_TINY = dict(hidden_size=64, num_attention_heads=2, num_key_value_heads=1)  # vLLM's CPU heads
SRC = Path(__file__).resolve().parents[1] / "src"
needs_vllm = pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                                reason="needs vLLM (.venv-vllm/: tests/test_vllm_env.py runs it)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(save_tiny_causal_lm(tmp_path_factory.mktemp("vllm_server") / "tiny", **VLLM_TINY))


def _policy(path: str, url: str, **overrides):
    values = dict(model_name_or_path=path, generation_backend="vllm_server", vllm_server_url=url,
                  max_new_tokens=8, temperature=0.7, use_lora=False)
    values.update(overrides)
    config = RebelConfig(**values)
    return load_policy(config.model, config.sampling, torch.device("cpu"), config.max_prompt_length)


# ------------------------------------------------------------------ no vLLM needed
def test_vllm_server_without_a_url_is_one_line():
    with pytest.raises(ConfigError, match="^generation_backend vllm_server needs vllm_server_url"):
        RebelConfig(generation_backend="vllm_server").validate()


def test_an_unreachable_server_is_one_line_fast_and_writes_nothing(tiny, tmp_path, capfd):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=f"^the vLLM server {url} does not answer /health"):
        check_servers(f"{url}/")
    assert time.perf_counter() - start < 5
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "hi"}])
    capfd.readouterr()
    code = main(["train", "--model_name_or_path", tiny, "--dataset", prompts, "--rewards", "length",
                 "--generation_backend", "vllm_server", "--vllm_server_url", url,
                 "--output_dir", str(tmp_path / "run"), "--progress", "false"])
    err = capfd.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"error: the vLLM server {url} does not answer /health (")
    assert "rebel vllm-serve --model" in err[0] and "--resume" in err[0]
    assert not (tmp_path / "run").exists()


def test_vllm_serve_without_vllm_is_one_line(tiny, monkeypatch, capfd):
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` fails, as in the main env
    capfd.readouterr()
    assert main(["vllm-serve", "--model", tiny, "--port", str(free_port())]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("error: rebel vllm-serve needs vLLM: pip install"), err


@pytest.mark.parametrize("change", ["hidden_size", "tokenizer"])
def test_a_server_of_another_model_is_one_line(tiny, change):
    from transformers import AutoConfig

    theirs = model_signature(AutoConfig.from_pretrained(tiny), tiny_tokenizer())
    assert model_signature(AutoConfig.from_pretrained(tiny), tiny_tokenizer()) == theirs
    if change == "hidden_size":  # e.g. the 360M model's server, for a 135M run
        theirs["hidden_size"] = 96
    else:  # same sizes, another vocabulary
        theirs["tokenizer"] = model_signature(AutoConfig.from_pretrained(tiny),
                                              tiny_tokenizer(vocab_size=380))["tokenizer"]
        assert theirs["tokenizer"] != model_signature(AutoConfig.from_pretrained(tiny),
                                                      tiny_tokenizer())["tokenizer"]
    server = StandIn({"model": "/elsewhere/other", "dtype": "float32", "max_model_len": 128,
                      **theirs})
    url = server.url
    try:
        with pytest.raises(ConfigError, match=f"^the vLLM server {url} serves /elsewhere/other "
                                              f"\\({change} .*not this run's model {tiny}"):
            _policy(tiny, url)
    finally:
        server.shutdown()


# ------------------------------------------------------------------ a real `rebel vllm-serve`
def start_server(model: str, port: int) -> subprocess.Popen:
    """`rebel vllm-serve` in its own process (this environment, this checkout), once it answers."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC)}
    command = [sys.executable, "-m", "rebel_rl.cli", "vllm-serve", "--model", model,
               "--port", str(port), "--kv_cache_gb", "0.25"]
    process = subprocess.Popen(command, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 600  # vLLM on a loaded 2-core CPU: about a minute, often more
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"rebel vllm-serve exited: {process.stdout.read()[-3000:]}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read()
            return process
        except OSError:
            time.sleep(2)
    process.kill()
    raise AssertionError("rebel vllm-serve did not answer within 600 s")


@pytest.fixture(scope="module")
def server(tiny):
    port = free_port()
    process = start_server(tiny, port)
    holder = {"process": process, "url": f"http://127.0.0.1:{port}", "port": port}
    yield holder
    holder["process"].kill()
    holder["process"].wait()


@pytest.fixture(scope="module")
def policy(tiny, server):
    return _policy(tiny, server["url"])


def _greedy(policy, backend: str):
    """Greedy completions (top_k=1) of PROMPTS by the server, or by generate from the trainer."""
    policy.top_k = 1
    try:
        if backend == "server":
            return policy.sample(PROMPTS, 1)
        return CausalLMPolicy.sample(policy, PROMPTS, 1)
    finally:
        policy.top_k = 0


def _push_lm_head(policy, token_row: int) -> None:
    """An update that changes greedy completions (one lm_head row turned away), then the notice."""
    with torch.no_grad():
        policy.model.lm_head.weight[token_row] *= -3.0
    policy.weights_updated()


@needs_vllm
def test_pushed_weights_give_the_trainers_greedy_tokens(policy):
    before = _greedy(policy, "server")
    assert torch.equal(before.completion_ids, _greedy(policy, "hf").completion_ids)
    _push_lm_head(policy, int(before.completion_ids[0, 0]))
    after_hf = _greedy(policy, "hf")
    assert not torch.equal(after_hf.completion_ids, before.completion_ids)  # the update shows
    assert torch.equal(_greedy(policy, "server").completion_ids, after_hf.completion_ids)
    policy.sampling_token_log_probs(policy.sample(PROMPTS, 2))
    diff = policy.sampling_metrics()["vllm/logprob_diff"]
    assert diff < 1e-3, diff  # fp32 both sides: the server samples the trainer's weights


@needs_vllm
def test_a_skipped_push_is_caught(policy, monkeypatch):
    """The check above fails when the server is not sent the weights: its greedy tokens stay old."""
    stale = _greedy(policy, "server")
    monkeypatch.setattr(type(policy), "weights_updated", lambda self: None)
    _push_lm_head(policy, int(stale.completion_ids[1, 0]))
    assert not torch.equal(_greedy(policy, "hf").completion_ids, stale.completion_ids)
    assert torch.equal(_greedy(policy, "server").completion_ids, stale.completion_ids)
    policy._stale = True  # in sync again for the tests after this one


@needs_vllm
def test_several_urls_share_the_prompts_and_give_the_same_samples(policy):
    """Round-robin over two URLs (here the same server twice): the same samples as over one."""
    torch.manual_seed(0)
    one = policy.sample(PROMPTS[:3], 2)
    urls, policy.engine = policy.engine, policy.engine * 2
    policy.server_dtype = dict.fromkeys(policy.engine, torch.float32)
    try:
        torch.manual_seed(0)
        two = policy.sample(PROMPTS[:3], 2)
    finally:
        policy.engine = urls
    assert torch.equal(two.completion_ids, one.completion_ids)
    assert two.completions == one.completions
    torch.manual_seed(1)  # and the seeds matter: another draw gives other samples
    assert not torch.equal(policy.sample(PROMPTS[:3], 2).completion_ids, one.completion_ids)


def run_config(tiny, server, tmp_path, run_dir, **overrides) -> dict:
    """A tiny run sampled by the module's server, a checkpoint every iteration."""
    config = dict(model_name_or_path=tiny, dataset=write_jsonl(tmp_path / "train.jsonl",
                                                               [{"prompt": p} for p in PROMPTS]),
                  rewards=[], num_iterations=3, prompts_per_iteration=2, minibatch_prompts=2,
                  num_generations=2, max_new_tokens=4, num_epochs=1, eval_prompts=0, kl_coef=0.0,
                  lora_r=4, mixed_precision="no", progress=False, tensorboard=False, save_every=1,
                  seed=0, output_dir=str(run_dir), generation_backend="vllm_server",
                  vllm_server_url=server["url"])
    config.update(overrides)
    return config


@needs_vllm
def test_async_rollouts_on_the_server_resume_exactly(tiny, server, tmp_path):
    """async_rollouts 1: batch t+1 drawn by the server during update t (staleness 1, the gap
    measured with vLLM's log-probs); stopped after iteration 2 and resumed, the run logs what an
    uninterrupted one does (the server holds the other run's weights in between: each pushes its
    own first)."""
    from test_async_rollouts import metrics_lines

    from rebel_rl.training.online.loop import RebelTrainer, resume

    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    for run_dir in (straight, stopped):
        RebelTrainer(RebelConfig(**run_config(
            tiny, server, tmp_path, run_dir, rewards=["length"], num_iterations=4, save_every=2,
            async_rollouts=1, learning_rate=0.2, top_k=4, max_new_tokens=6))).train()
    shutil.rmtree(stopped / "checkpoints" / "iter-000004")  # as if killed after iteration 2
    resume(stopped)
    rows = metrics_lines(stopped)
    assert rows == metrics_lines(straight)
    assert [row["async/staleness"] for row in rows] == [0, 1, 1, 1]
    assert all(row["async/logprob_gap"] > 0 for row in rows[1:])


@needs_vllm
def test_a_server_killed_mid_run_is_one_line_and_resume_continues(tiny, server, tmp_path):
    """The server dies during iteration 2: iteration 3's weight push stops the run with one line,
    the iteration-2 checkpoint stays; with the server back, `resume` runs iteration 3 only. (The
    last test here: it restarts the module's server.)"""
    from rebel_rl.training.online.loop import RebelTrainer
    from rebel_rl.training.run.checkpoint import list_checkpoints
    from rebel_rl.training.run.outputs import read_metrics

    run_dir = tmp_path / "run"
    config = run_config(tiny, server, tmp_path, run_dir)
    calls = []

    def length_killing_the_server(prompts, completions, **kwargs):
        calls.append(len(completions))
        if len(calls) == 2:  # iteration 2 has sampled: the server goes away
            server["process"].kill()
            server["process"].wait()
        return [float(len(c)) for c in completions]

    trainer = RebelTrainer(RebelConfig(**config), reward_funcs=[length_killing_the_server])
    with pytest.raises(ConfigError) as caught:
        trainer.train()
    message = str(caught.value)
    assert message.startswith(f"the vLLM server {server['url']} does not answer /update_weights (")
    assert "\n" not in message and "--resume" in message
    assert [m["iteration"] for m in read_metrics(run_dir)] == [1, 2]
    assert int(list_checkpoints(run_dir / "checkpoints")[-1].name.split("-")[1]) == 2
    del trainer
    server["process"] = start_server(tiny, server["port"])
    resumed = RebelTrainer(RebelConfig(**config), reward_funcs=[length_killing_the_server],
                           resume=True)
    resumed.train()
    assert [m["iteration"] for m in read_metrics(run_dir)] == [1, 2, 3]
    assert len(calls) == 3  # iteration 3 alone ran again
