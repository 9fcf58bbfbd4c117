"""The inverse-CDF draw (policies/causal_lm/sampling_draw.py) samples exactly softmax(logits / temperature):
chi-square tests of its empirical frequencies, alone and through generate(), that reject a wrong
temperature; top-k / top-p masks are respected; generate's multinomial is no longer called."""
import pytest
import torch
from scipy.stats import chi2
from tiny import save_tiny_causal_lm
from transformers import GenerationConfig

from rebel_rl import RebelConfig
from rebel_rl.policies.causal_lm import sampling_draw
from rebel_rl.policies.factory import load_policy
from rebel_rl.policies.causal_lm.sampling_draw import InverseCDFDraw, generate_kwargs

LOGITS = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, -3.0])


def chi_square_p(counts: torch.Tensor, probs: torch.Tensor, min_expected: float = 5.0) -> float:
    """p-value of Pearson's chi-square test of `counts` against `probs`; bins expected below
    `min_expected` are pooled into one (the test's approximation needs it)."""
    expected = probs.double() * counts.sum()
    small = expected < min_expected
    observed = torch.cat([counts[~small].double(), counts[small].double().sum(0, keepdim=True)])
    expected = torch.cat([expected[~small], expected[small].sum(0, keepdim=True)])
    keep = expected > 0
    assert observed[~keep].sum() == 0, "a token of probability 0 was drawn"
    statistic = ((observed[keep] - expected[keep]) ** 2 / expected[keep]).sum()
    return float(chi2.sf(float(statistic), int(keep.sum()) - 1))


def draw_counts(scores: torch.Tensor, rows: int, seed: int = 0) -> torch.Tensor:
    """Counts per token of `rows` draws of InverseCDFDraw from the same `scores`."""
    torch.manual_seed(seed)
    out = InverseCDFDraw()(None, scores.expand(rows, -1).clone())
    assert out.eq(0).sum(-1).eq(1).all() and out.isinf().sum(-1).eq(len(scores) - 1).all()
    return torch.bincount(out.argmax(-1), minlength=len(scores))


@pytest.mark.parametrize("temperature", [0.5, 1.0, 1.7])
def test_draw_matches_softmax_and_rejects_a_wrong_temperature(temperature):
    counts = draw_counts(LOGITS / temperature, 40_000)
    assert chi_square_p(counts, torch.softmax(LOGITS / temperature, -1)) > 1e-3
    wrong = temperature * 1.3
    assert chi_square_p(counts, torch.softmax(LOGITS / wrong, -1)) < 1e-8


def test_draw_never_picks_a_masked_token_and_keeps_the_rest_proportional():
    scores = LOGITS.clone()
    scores[[0, 3]] = float("-inf")  # what top-k / top-p leave behind; the first and a middle one
    counts = draw_counts(scores, 20_000, seed=1)
    assert counts[0] == 0 and counts[3] == 0
    assert chi_square_p(counts, torch.softmax(scores, -1)) > 1e-3


def test_same_seed_same_tokens_and_another_seed_other_tokens():
    scores = torch.randn(64, 50, generator=torch.Generator().manual_seed(0))
    drawn = []
    for seed in (5, 5, 6):
        torch.manual_seed(seed)
        drawn.append(InverseCDFDraw()(None, scores.clone()).argmax(-1))
    assert torch.equal(drawn[0], drawn[1]) and not torch.equal(drawn[0], drawn[2])


def test_generate_kwargs_moves_the_warpers_and_leaves_other_configs_alone(monkeypatch):
    config = GenerationConfig(do_sample=True, temperature=0.7, top_k=5, top_p=0.9, max_new_tokens=3)
    kwargs = generate_kwargs(config)
    assert kwargs["generation_config"].do_sample is False and config.do_sample is True
    names = [type(p).__name__ for p in kwargs["logits_processor"]]
    assert names == ["TemperatureLogitsWarper", "TopKLogitsWarper", "TopPLogitsWarper",
                     "InverseCDFDraw"]
    greedy = GenerationConfig(do_sample=False, max_new_tokens=3)
    assert generate_kwargs(greedy) == {"generation_config": greedy}
    monkeypatch.setattr(sampling_draw, "DRAW", "multinomial")
    assert generate_kwargs(config) == {"generation_config": config}


@pytest.fixture(scope="module")
def sharp_policy(tmp_path_factory):
    """The tiny Llama (390 tokens) with its head scaled up, so next-token probabilities spread from
    0 to 0.5 and a wrong temperature shows."""
    path = save_tiny_causal_lm(tmp_path_factory.mktemp("lm") / "tiny")
    config = RebelConfig(model_name_or_path=str(path), max_new_tokens=1, temperature=0.7)
    policy = load_policy(config.model, config.sampling, torch.device("cpu"),
                         config.max_prompt_length)
    with torch.no_grad():
        policy.model.get_output_embeddings().weight.mul_(60)
    return policy


PROMPT = [[{"role": "user", "content": "hi there"}]]


def first_token_probs(policy, temperature: float, top_k: int = 0) -> torch.Tensor:
    """softmax(logits / temperature) of the first completion token, top-k restricted."""
    ids, mask = policy.encode_prompts(PROMPT)
    with torch.no_grad():
        logits = policy.model(input_ids=ids, attention_mask=mask).logits[0, -1].double()
    if top_k:
        logits[logits < logits.topk(top_k).values[-1]] = float("-inf")
    return torch.softmax(logits / temperature, -1)


@pytest.mark.parametrize("top_k", [0, 7])
def test_policy_sample_draws_the_tempered_softmax_without_multinomial(sharp_policy, monkeypatch,
                                                                       top_k):
    """policy.sample through generate(): the first tokens of 6,000 samples fit softmax(logits/0.7)
    (top-k restricted), not softmax(logits/1.0); torch.multinomial is never called."""
    def refuse(*args, **kwargs):
        raise AssertionError("torch.multinomial was called")

    monkeypatch.setattr(torch, "multinomial", refuse)
    monkeypatch.setattr(sharp_policy, "top_k", top_k)
    torch.manual_seed(0)
    rollout = sharp_policy.sample(PROMPT, 6_000)
    counts = torch.bincount(rollout.completion_ids[:, 0], minlength=len(sharp_policy.tokenizer))
    probs = first_token_probs(sharp_policy, 0.7, top_k)
    assert probs.max() > 0.1 and (probs > 1e-3).sum() > 5  # neither uniform nor one token
    assert chi_square_p(counts, probs) > 1e-3
    assert chi_square_p(counts, first_token_probs(sharp_policy, 1.0, top_k)) < 1e-8


def test_multinomial_switch_gives_generates_own_tokens(sharp_policy, monkeypatch):
    """With DRAW = "multinomial" sample() is generate(do_sample=True) itself: the same tokens as
    calling it directly for the same seed (and the inverse-CDF draw gives others)."""
    monkeypatch.setattr(sharp_policy, "max_new_tokens", 6)
    ids, mask = sharp_policy.encode_prompts(PROMPT)
    config = GenerationConfig(do_sample=True, temperature=0.7, top_k=0, top_p=1.0,
                              max_new_tokens=6, eos_token_id=sharp_policy.eos_token_ids.tolist(),
                              pad_token_id=sharp_policy.tokenizer.pad_token_id)
    torch.manual_seed(2)
    with torch.no_grad():
        direct = sharp_policy.model.generate(input_ids=ids.repeat(8, 1),
                                             attention_mask=mask.repeat(8, 1),
                                             generation_config=config)[:, ids.shape[1]:]
    samples = {}
    for draw in ("multinomial", "inverse_cdf"):
        monkeypatch.setattr(sampling_draw, "DRAW", draw)
        torch.manual_seed(2)
        samples[draw] = sharp_policy.sample(PROMPT, 8).completion_ids
    assert torch.equal(samples["multinomial"], direct)
    assert not torch.equal(samples["inverse_cdf"], direct)
