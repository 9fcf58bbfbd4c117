"""`logprob_chunk_size`: the causal-LM policy's log-probs and gradients with the LM head run in
chunks of positions are those of the full-logits path (policies/causal_lm/chunked_head.py)."""
import pytest
import torch

import rebel_rl
from rebel_rl import ConfigError, RebelConfig
from rebel_rl.policies.causal_lm import policy as causal_lm
from rebel_rl.policies.causal_lm import shared_prompts
from rebel_rl.policies.causal_lm.chunked_head import chunkable_head
from rebel_rl.policies.causal_lm.policy import first_eos_mask
from rebel_rl.training.run.outputs import read_metrics
from test_causal_lm import PROMPTS, _perturb_adapter, _policy
from test_training import files, make_config  # noqa: F401  (files is a fixture)


def _spy_chunked(monkeypatch) -> list:
    """Record each call of the chunked path, so a test knows which path ran."""
    calls, real = [], causal_lm.chunked_completion_logps
    monkeypatch.setattr(causal_lm, "chunked_completion_logps",
                        lambda *a, **k: calls.append(a[-1]) or real(*a, **k))
    return calls


def _logps_and_grads(policy, rollout, chunk: int):
    policy.logprob_chunk_size = chunk
    logps = policy.token_log_probs(rollout)
    weights = torch.linspace(-1, 1, logps.numel(), dtype=logps.dtype).view_as(logps)
    trained = [p for p in policy.model.parameters() if p.requires_grad]
    return logps.detach(), torch.autograd.grad((logps * weights).sum(), trained)


@pytest.mark.parametrize("packed", [True, False])
@pytest.mark.parametrize("use_lora", [True, False])
def test_chunked_head_gives_the_full_paths_log_probs_and_gradients(any_tiny_path, packed, use_lora,
                                                                   monkeypatch):
    """Llama and GPT-2, LoRA (frozen head) and full fine-tuning (trained head), packed prompts and
    one padded row per sample, temperature 0.7, rows that end early, in float64. The full path's
    log-softmax runs in float32, so values agree to ~1e-7 and gradients of ~50 to ~1e-5."""
    torch.manual_seed(3)
    policy = _policy(any_tiny_path, use_lora=use_lora)
    if use_lora:
        _perturb_adapter(policy)
    rollout = policy.sample(PROMPTS, 3)
    rollout.completion_ids[1, 4] = int(policy.eos_token_ids[0])  # a row that ends early
    rollout.completion_mask, rollout.has_eos = first_eos_mask(rollout.completion_ids,
                                                              policy.eos_token_ids)
    rollout = policy.concat([rollout, policy.sample(PROMPTS[1:2], 1)])  # one prompt not repeated
    policy.model.double()
    monkeypatch.setattr(shared_prompts, "ENABLED", packed)
    calls = _spy_chunked(monkeypatch)
    full_logps, full_grads = _logps_and_grads(policy, rollout, 0)
    assert calls == []
    chunk_logps, chunk_grads = _logps_and_grads(policy, rollout, 3)
    assert calls == [3]
    torch.testing.assert_close(chunk_logps, full_logps, rtol=0, atol=1e-6)
    assert chunk_logps.ne(0).sum() == rollout.completion_mask.sum()  # zero exactly after the EOS
    for a, b in zip(chunk_grads, full_grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)
    with torch.no_grad():  # pi_ref's pass takes the chunked path too
        ref_chunked = policy.token_log_probs(rollout, reference=True)
        assert calls == [3, 3]
        policy.logprob_chunk_size = 0
        ref_full = policy.token_log_probs(rollout, reference=True)
    torch.testing.assert_close(ref_chunked, ref_full, rtol=0, atol=1e-6)
    if use_lora:  # the perturbed adapter sets the policy apart from pi_ref (else a frozen copy)
        assert not torch.allclose(ref_full, full_logps, atol=1e-3)


def test_lora_on_the_head_falls_back_to_the_full_path(any_tiny_path, monkeypatch):
    """A LoRA-wrapped head is not a plain Linear: the chunked path would drop the adapter's term."""
    plain = _policy(any_tiny_path)
    assert type(chunkable_head(plain.model)) is torch.nn.Linear
    head_name = "lm_head"
    policy = _policy(any_tiny_path, lora_target_modules=f"{head_name},q_proj,c_attn")
    assert chunkable_head(policy.model) is None
    calls = _spy_chunked(monkeypatch)
    policy.logprob_chunk_size = 3
    rollout = policy.sample(PROMPTS, 2)
    assert policy.token_log_probs(rollout).shape == rollout.completion_ids.shape
    assert calls == []


def test_one_iteration_gives_the_same_loss_with_a_chunked_head(files, tmp_path):  # noqa: F811
    """Two minibatches, so the second loss also depends on the first update's gradient."""
    losses = []
    for chunk in (0, 3):
        run_dir = tmp_path / f"chunk{chunk}"
        rebel_rl.train(make_config(files, run_dir, num_iterations=1, rewards=["length"],
                                   logprob_chunk_size=chunk))
        (metrics,) = read_metrics(run_dir)
        losses.append(metrics["loss"])
    assert losses[0] != 0
    assert losses[1] == pytest.approx(losses[0], rel=1e-5, abs=1e-7)


def test_negative_chunk_size_is_a_config_error():
    with pytest.raises(ConfigError, match="logprob_chunk_size must be >= 0"):
        RebelConfig(logprob_chunk_size=-1).validate()
