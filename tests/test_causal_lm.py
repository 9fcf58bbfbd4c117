"""The causal-LM policy: EOS masking, padded log-probs against a slow one-sequence reference, sampling."""
import pytest
import torch
from transformers import GenerationConfig

from rebel_rl import DataError, RebelConfig
from rebel_rl.policies.causal_lm import policy as causal_lm
from rebel_rl.policies.causal_lm import shared_prompts
from rebel_rl.policies.causal_lm.policy import first_eos_mask, sequence_logps
from rebel_rl.policies.factory import load_policy
from rebel_rl.policies.causal_lm.lora_sampling import adapter_folded, can_fold_adapter
from rebel_rl.policies.causal_lm.shared_prompts import generate_sharing_prompts, prompt_groups
from tiny import save_tiny_causal_lm

EOS = 2


def test_first_eos_mask_includes_first_eos_and_masks_after():
    ids = torch.tensor([
        [5, 6, EOS, 7, EOS],   # EOS in the middle: keep it, drop what follows
        [EOS, 5, 6, 7, 8],     # EOS first: only the EOS token counts
        [5, 6, 7, 8, 9],       # never emits EOS
        [5, 6, 7, 8, EOS],     # EOS last
    ])
    mask, has_eos = first_eos_mask(ids, torch.tensor([EOS]))
    assert mask.tolist() == [[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1]]
    assert has_eos.tolist() == [True, True, False, True]


def test_first_eos_mask_with_several_eos_ids():
    mask, has_eos = first_eos_mask(torch.tensor([[5, 9, 3, 3]]), torch.tensor([3, 9]))
    assert mask.tolist() == [[1, 1, 0, 0]] and has_eos.tolist() == [True]


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return save_tiny_causal_lm(tmp_path_factory.mktemp("lm") / "tiny")


def _policy(tiny_path, **overrides):
    values = dict(model_name_or_path=str(tiny_path), max_new_tokens=12, temperature=0.7, use_lora=True, lora_r=4)
    values.update(overrides)
    config = RebelConfig(**values)
    return load_policy(config.model, config.sampling, torch.device("cpu"), config.max_prompt_length)


def _perturb_adapter(policy):
    """A random adapter, so the policy differs from its reference and tests are not trivial."""
    with torch.no_grad():
        for name, p in policy.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)


PROMPTS = [
    [{"role": "user", "content": "tell me about your weekend please"}],
    [{"role": "user", "content": "hi"}],
    [{"role": "user", "content": "describe a good book you read and the sea"}],
]


def _slow_logp(model, prompt_ids, prompt_mask, completion_ids, completion_mask, temperature):
    """One sequence at a time, no padding at all: the definition of log pi(y|x)."""
    prompt = prompt_ids[prompt_mask.bool()]
    completion = completion_ids[completion_mask.bool()]
    ids = torch.cat([prompt, completion]).unsqueeze(0)
    logits = model(input_ids=ids).logits[0].float() / temperature
    logp = torch.log_softmax(logits, -1)
    positions = torch.arange(len(prompt) - 1, len(prompt) + len(completion) - 1)
    return logp[positions, completion].sum()


def test_padded_logps_match_one_sequence_at_a_time(any_tiny_path):
    torch.manual_seed(0)
    policy = _policy(any_tiny_path, lora_target_modules="all-linear")
    _perturb_adapter(policy)
    rollout = policy.sample(PROMPTS, 3)
    assert rollout.prompt_mask[:, 0].eq(0).any(), "prompts of different length must be left-padded"
    assert (~rollout.has_eos).any() or rollout.completion_mask.eq(0).any()
    batched = policy.log_probs(rollout).detach()
    reference = policy.log_probs(rollout, reference=True)
    for i in range(len(rollout)):
        args = (rollout.prompt_ids[i], rollout.prompt_mask[i], rollout.completion_ids[i], rollout.completion_mask[i], 0.7)
        with torch.no_grad():
            slow = _slow_logp(policy.model, *args)
            with policy.model.disable_adapter():
                slow_ref = _slow_logp(policy.model, *args)
        assert batched[i].item() == pytest.approx(slow.item(), abs=1e-4)
        assert reference[i].item() == pytest.approx(slow_ref.item(), abs=1e-4)
    assert not torch.allclose(batched, reference, atol=1e-3)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_packed_prompts_give_the_full_forwards_log_probs_and_gradients(any_tiny_path, attention, monkeypatch):
    """Rows that repeat a prompt are packed into one sequence per prompt (the completions side by side,
    kept apart by the attention mask): the same log-probs and adapter gradients as one padded row per
    sample, also when only some prompts repeat, for rotary (Llama) and absolute (GPT-2) positions."""
    torch.manual_seed(2)
    policy = _policy(any_tiny_path, lora_target_modules="all-linear")
    _perturb_adapter(policy)
    policy.model.config._attn_implementation = attention
    repeated = policy.sample(PROMPTS, 3)
    repeated.completion_ids[1, 4] = repeated.completion_ids[5, 0] = int(policy.eos_token_ids[0])  # rows that end early
    repeated.completion_mask, repeated.has_eos = first_eos_mask(repeated.completion_ids, policy.eos_token_ids)
    assert (~repeated.has_eos).any() and repeated.has_eos.sum() >= 2
    single = policy.sample(PROMPTS[1:2], 1)
    # float64 passes (the log-softmax stays float32) leave rounding differences of ~1e-5 in gradients of ~50,
    # float32 ones ~2e-4; a wrong mask or position moves them by ~1. (transformers' own eager path gives NaN
    # in float64, so eager is checked in float32.)
    double = attention == "sdpa"
    if double:
        policy.model.double()
    tolerance = dict(rtol=1e-5, atol=1e-4) if double else dict(rtol=1e-3, atol=1e-3)
    adapter = [p for p in policy.model.parameters() if p.requires_grad]
    packed_forwards = []
    pack = shared_prompts.packed_logits
    monkeypatch.setattr(shared_prompts, "packed_logits",
                        lambda *args: packed_forwards.append(1) or pack(*args))
    for rollout in (repeated, policy.concat([repeated, single])):
        results = []
        for packed in (True, False):
            monkeypatch.setattr(shared_prompts, "ENABLED", packed)
            before = len(packed_forwards)
            logps = policy.token_log_probs(rollout)
            assert len(packed_forwards) - before == packed  # the packed path really ran, or not
            weights = torch.linspace(-1, 1, logps.numel(), dtype=logps.dtype).view_as(logps)  # weighs every token
            grads = torch.autograd.grad((logps * weights).sum(), adapter)
            results.append((logps.detach(), grads))
        (packed_logps, packed_grads), (full_logps, full_grads) = results
        torch.testing.assert_close(packed_logps, full_logps, rtol=0, atol=1e-10 if double else 2e-5)
        assert packed_logps.ne(0).sum() == rollout.completion_mask.sum()  # zero exactly after the first EOS
        for a, b in zip(packed_grads, full_grads):
            torch.testing.assert_close(a, b, **tolerance)
    monkeypatch.setattr(shared_prompts, "ENABLED", True)
    rows = torch.where(repeated.prompt_mask.bool(), repeated.prompt_ids, -1)
    assert prompt_groups(repeated.prompt_ids, repeated.prompt_mask)[1].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert prompt_groups(rows[::3], repeated.prompt_mask[::3]) is None  # nothing repeats: one plain forward


def test_prompts_are_packed_only_where_it_costs_fewer_flops():
    """SmolLM2-135M's widths, 8 prompts x 4 samples, 30 prompt tokens: packing is cheaper at the
    demo's 48 new tokens and dearer at 1,024, where its dense attention over 4 completions side by
    side outgrows the prompt computed once."""
    from types import SimpleNamespace

    smollm2 = SimpleNamespace(hidden_size=576, intermediate_size=1536)
    run = torch.arange(32) // 4
    groups = (torch.arange(0, 32, 4), run)
    assert shared_prompts.packing_pays(smollm2, 30, 48, groups)
    assert not shared_prompts.packing_pays(smollm2, 30, 1024, groups)
    # a long prompt (a dialogue, a document) makes packing pay again at the same length
    assert shared_prompts.packing_pays(smollm2, 4096, 1024, groups)


def test_sampling_prefills_each_prompt_once_and_samples_the_same_tokens(any_tiny_path):
    """generate() from a prompt cache computed once and repeated over the n samples: the same tokens
    for the same seed, from the same logits, as generate() on n copies of each prompt."""
    policy = _policy(any_tiny_path)
    prompt_ids, prompt_mask = policy.encode_prompts(PROMPTS)
    assert prompt_mask[:, 0].eq(0).any()
    config = GenerationConfig(do_sample=True, temperature=0.7, top_k=0, top_p=1.0, max_new_tokens=12,
                              eos_token_id=policy.eos_token_ids.tolist(), pad_token_id=policy.tokenizer.pad_token_id,
                              output_logits=True, return_dict_in_generate=True)
    outputs = []
    for share in (True, False):
        torch.manual_seed(3)
        with torch.no_grad():
            if share:
                outputs.append(generate_sharing_prompts(policy.model, prompt_ids, prompt_mask, 4, generation_config=config))
            else:
                outputs.append(policy.model.generate(input_ids=prompt_ids.repeat_interleave(4, 0),
                                                     attention_mask=prompt_mask.repeat_interleave(4, 0),
                                                     generation_config=config))
    shared, full = outputs
    assert torch.equal(shared.sequences, full.sequences)
    for a, b in zip(shared.logits, full.logits):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-4)


def test_logps_are_those_of_the_sampling_distribution(tiny_path):
    """Recomputed log-probs equal the log-probs generate() sampled with (temperature, no top-k)."""
    torch.manual_seed(1)
    policy = _policy(tiny_path, temperature=0.6)
    prompt_ids, prompt_mask = policy.encode_prompts(PROMPTS)
    config = GenerationConfig(do_sample=True, temperature=0.6, top_k=0, top_p=1.0, max_new_tokens=12,
                              eos_token_id=policy.eos_token_ids.tolist(), pad_token_id=policy.tokenizer.pad_token_id,
                              output_scores=True, return_dict_in_generate=True)
    with torch.no_grad():
        out = policy.model.generate(input_ids=prompt_ids, attention_mask=prompt_mask, generation_config=config)
    completion = out.sequences[:, prompt_ids.shape[1]:]
    mask, _ = first_eos_mask(completion, policy.eos_token_ids)
    scores = torch.stack(out.scores, 1).log_softmax(-1)  # already divided by the temperature
    from_generate = (scores.gather(-1, completion.unsqueeze(-1)).squeeze(-1) * mask).sum(-1)
    with torch.no_grad():
        recomputed = sequence_logps(policy.model, prompt_ids, prompt_mask, completion, mask, 0.6)
    assert torch.allclose(recomputed, from_generate, atol=1e-4)


def test_gradients_flow_only_into_adapter(tiny_path):
    policy = _policy(tiny_path)
    rollout = policy.sample(PROMPTS[:1], 2)
    policy.log_probs(rollout).sum().backward()
    grads = {n: p.grad for n, p in policy.model.named_parameters() if p.requires_grad}
    assert grads and all("lora_" in n for n in grads)
    assert any(g is not None and g.abs().sum() > 0 for g in grads.values())


def test_full_finetuning_keeps_a_frozen_reference(tiny_path):
    policy = _policy(tiny_path, use_lora=False)
    assert policy.reference_model is not None
    assert not any(p.requires_grad for p in policy.reference_model.parameters())
    rollout = policy.sample(PROMPTS[:2], 2)
    before = policy.log_probs(rollout, reference=True)
    with torch.no_grad():
        for p in policy.model.parameters():
            p.add_(0.1)
    assert torch.allclose(policy.log_probs(rollout, reference=True), before)
    assert not torch.allclose(policy.log_probs(rollout).detach(), before, atol=1e-3)


def test_completions_decoded_up_to_first_eos(tiny_path):
    torch.manual_seed(0)
    policy = _policy(tiny_path)
    rollout = policy.sample(PROMPTS, 2)
    for ids, length, text in zip(rollout.completion_ids, rollout.lengths, rollout.completions):
        expected = policy.tokenizer.decode(ids[: int(length)], skip_special_tokens=True)
        assert text == expected


def test_prompt_longer_than_limit_is_a_data_error(tiny_path):
    policy = _policy(tiny_path, max_prompt_length=8)
    with pytest.raises(DataError, match="prompt 0 has .* tokens"):
        policy.encode_prompts([[{"role": "user", "content": "the movie was great and i loved it " * 3}]])


def test_prompt_longer_than_context_window(tiny_path):
    policy = _policy(tiny_path, max_prompt_length=10_000)  # tiny model's context is 128
    with pytest.raises(DataError, match="context window 128"):
        policy.encode_prompts(["the sea " * 80])


def test_lora_sampling_folds_the_adapter_without_touching_the_base_weights(any_tiny_path, monkeypatch):
    """Sampling runs W + scale * B A as one matmul per layer: the same logits and tokens as the adapter
    branch (GPT-2's transposed Conv1D weights included), and afterwards every base weight is the very same
    tensor with the same bits, so pi_ref does not drift over many samples."""
    torch.manual_seed(4)
    policy = _policy(any_tiny_path, lora_target_modules="all-linear")
    _perturb_adapter(policy)
    base = {name: (p, p.detach().clone()) for name, p in policy.model.named_parameters() if "lora_" not in name}
    prompt_ids, prompt_mask = policy.encode_prompts(PROMPTS)
    assert can_fold_adapter(policy.model)
    with torch.no_grad():
        adapter_branch = policy.model(input_ids=prompt_ids, attention_mask=prompt_mask).logits
        with adapter_folded(policy.model) as folded:
            folded_logits = folded(input_ids=prompt_ids, attention_mask=prompt_mask).logits
        again = policy.model(input_ids=prompt_ids, attention_mask=prompt_mask).logits
        with policy.model.disable_adapter():
            base_only = policy.model(input_ids=prompt_ids, attention_mask=prompt_mask).logits
    torch.testing.assert_close(folded_logits, adapter_branch, rtol=0, atol=1e-4)
    assert torch.equal(again, adapter_branch)  # the adapter branch is on again, as before
    assert not torch.allclose(adapter_branch, base_only, atol=1e-2)  # and it matters
    samples = []
    for fold in (True, False):
        torch.manual_seed(5)
        monkeypatch.setattr(causal_lm, "can_fold_adapter", lambda model: fold)
        samples.append(policy.sample(PROMPTS, 2).completion_ids)
    assert torch.equal(samples[0], samples[1])
    for name, p in policy.model.named_parameters():
        if "lora_" not in name:
            assert p is base[name][0] and torch.equal(p, base[name][1]), name


def test_adapter_is_not_folded_for_full_finetuning(tiny_path):
    assert not can_fold_adapter(_policy(tiny_path, use_lora=False).model)
