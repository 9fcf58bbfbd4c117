"""Multi-turn episodes of the causal-LM policy (policies/multiturn.py) and their use by the loop:
environment tokens are attended but never scored, the policy's ids go in unchanged, limits stop
episodes, an episode's log-prob is the sum of its turns', and REBEL, RLOO and GRPO train on them."""
import itertools
import json
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from rebel_rl import ConfigError, RebelConfig
from rebel_rl.policies.causal_lm import shared_prompts
from rebel_rl.policies.causal_lm.policy import token_logps, wrap_causal_lm_policy
from rebel_rl.policies.multiturn import render
from rebel_rl.training.online.loop import RebelTrainer
from tiny import save_tiny_causal_lm, write_jsonl

PROMPTS = ["tell me about your weekend", "the movie was"]


class EchoEnv:
    """Never done: replies with the policy's text reversed; the step reward is its length."""

    def reset(self, row):  # opens with a system message, then the row's prompt
        prompt = row["prompt"]
        opening = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        return [{"role": "system", "content": f"echo {row['tag']}"}, *opening]

    def step(self, text):
        return [{"role": "user", "content": text[::-1] or "say something"}], float(len(text)), False


class TwoTurnEnv:
    """Done after the second policy turn: rewards 0.5 then 1.0 (return 1.5)."""

    def __init__(self):
        self.turn = 0

    def reset(self, row):
        return []

    def step(self, text):
        self.turn += 1
        if self.turn == 1:
            return [{"role": "user", "content": "try again"}], 0.5, False
        return [], 1.0, True


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return save_tiny_causal_lm(tmp_path_factory.mktemp("lm") / "tiny", max_position_embeddings=512)


def make_policy(tiny_path, eos_bias: float = 0.0, max_new_tokens: int = 8):
    """The tiny chat model as a policy; `eos_bias` added to the end-of-turn logit makes turns end
    with EOS after a few tokens (the random model alone hardly ever samples it)."""
    model = AutoModelForCausalLM.from_pretrained(tiny_path)
    tokenizer = AutoTokenizer.from_pretrained(tiny_path)
    head = model.lm_head
    biased = torch.nn.Linear(head.in_features, head.out_features, bias=True)
    with torch.no_grad():
        biased.weight.copy_(head.weight)
        biased.bias.zero_()
        biased.bias[tokenizer.eos_token_id] = eos_bias
    model.lm_head = biased
    config = RebelConfig(model_name_or_path=str(tiny_path), max_new_tokens=max_new_tokens,
                         temperature=1.0)
    return wrap_causal_lm_policy(model, tokenizer, config.sampling, torch.device("cpu"))


def generated_turns(policy, monkeypatch) -> list[list[list[int]]]:
    """Record each `generate` call's new ids (per call: one list per live episode, EOS and padding
    included)."""
    calls = []
    original = policy.model.generate

    def spy(*args, **kwargs):
        output = original(*args, **kwargs)
        calls.append([row.tolist() for row in output[:, kwargs["input_ids"].shape[1]:]])
        return output

    monkeypatch.setattr(policy.model, "generate", spy)
    return calls


def turn_spans(mask: list[int]) -> list[tuple[int, int]]:
    """(start, end) of each run of 1s in a completion mask: the policy's turns."""
    spans, start = [], None
    for j, value in enumerate(mask + [0]):
        if value and start is None:
            start = j
        elif not value and start is not None:
            spans.append((start, j))
            start = None
    return spans


def test_policy_ids_unchanged_env_tokens_masked_end_of_turn_scored(tiny_path, monkeypatch):
    torch.manual_seed(0)
    policy = make_policy(tiny_path, eos_bias=6.0)
    calls = generated_turns(policy, monkeypatch)
    rows = [{"tag": "a"}, {"tag": "b"}]
    rollout = policy.sample_episodes(PROMPTS, rows, [EchoEnv(), EchoEnv()], max_turns=3,
                                     max_total_tokens=400)
    eos, newline = policy.tokenizer.eos_token_id, policy.tokenizer("\n")["input_ids"]
    assert rollout.turns.tolist() == [3, 3] and len(calls) == 3
    for i in range(2):
        ids = rollout.completion_ids[i].tolist()
        mask = rollout.completion_mask[i].tolist()
        attended = int(rollout.completion_attention_mask[i].sum())
        spans = turn_spans(mask)
        assert len(spans) == 3
        for (start, end), call in zip(spans, calls):
            sampled = call[i]
            # The turn is the sampled ids up to and including the first EOS, exactly.
            expected = sampled[: sampled.index(eos) + 1] if eos in sampled else sampled
            assert ids[start:end] == expected
            if eos in sampled:
                assert ids[end - 1] == eos and mask[end - 1] == 1
                if end < attended:  # the template's "\n" after the end-of-turn token: not sampled
                    assert ids[end:end + len(newline)] == newline and mask[end] == 0
        assert sum(1 for (s, e) in spans if ids[e - 1] == eos) >= 1  # the bias makes EOS turns
        # Everything between turns is the environment's and the template's: attended, never scored.
        assert sum(mask) < attended and all(m == 0 for m in mask[attended:])
        # The whole sequence is the template's rendering of the dialogue, up to the last turn.
        decode = policy.tokenizer.decode
        contents = [decode(ids[s:e], skip_special_tokens=True) for s, e in spans]
        dialogue = [{"role": "system", "content": f"echo {rows[i]['tag']}"},
                    {"role": "user", "content": PROMPTS[i]}]
        for content in contents[:-1]:
            dialogue += [{"role": "assistant", "content": content},
                         {"role": "user", "content": content[::-1] or "say something"}]
        last = ids[spans[-1][0]:spans[-1][1]]
        expected = render(policy.tokenizer, None, dialogue, True) + decode(last)
        prompt = rollout.prompt_ids[i][rollout.prompt_mask[i].bool()].tolist()
        assert decode(prompt + ids[:attended], skip_special_tokens=False) == expected
        assert spans[-1][1] == attended  # the sequence ends with the policy's last turn
        assert rollout.completions[i] == decode(ids[:attended], skip_special_tokens=False)
    # Each step's reward is the length of the turn's text: the return is their sum.
    assert rollout.episode_rewards.tolist() == [
        float(sum(len(policy.tokenizer.decode(rollout.completion_ids[i][s:e],
                                              skip_special_tokens=True))
                  for s, e in turn_spans(rollout.completion_mask[i].tolist())))
        for i in range(2)]


def test_an_opening_reset_replaces_the_prompt_and_an_empty_one_keeps_it(tiny_path):
    """guess_number's reset returns the game's opening, which is also the row's prompt: it must
    appear once; an environment whose reset returns [] plays the row's prompt."""
    from rebel_rl.tasks.guess_number import GuessNumberEnvironment, load_guess_number

    torch.manual_seed(0)
    policy = make_policy(tiny_path)
    row = load_guess_number("test")[0]
    rollout = policy.sample_episodes([row["prompt"], "just this prompt"],
                                     [dict(row), {}], [GuessNumberEnvironment(), TwoTurnEnv()],
                                     max_turns=1, max_total_tokens=64)
    texts = [policy.tokenizer.decode(ids[mask.bool()]) for ids, mask in
             zip(rollout.prompt_ids, rollout.prompt_mask)]
    assert texts[0].count("I am thinking of a whole number") == 1
    assert texts[0].count("number guessing game") == 1
    assert "just this prompt" in texts[1]


def test_done_ends_the_episode_with_its_return(tiny_path):
    torch.manual_seed(1)
    policy = make_policy(tiny_path, eos_bias=6.0)
    rollout = policy.sample_episodes(PROMPTS, [{}, {}], lambda: TwoTurnEnv(), max_turns=5,
                                     max_total_tokens=400)
    assert rollout.turns.tolist() == [2, 2]
    assert rollout.episode_rewards.tolist() == [1.5, 1.5]
    assert rollout.has_eos.tolist() == [True, True]  # ended by done
    assert "try again" in rollout.completions[0]


def test_max_turns_and_max_total_tokens_stop_episodes(tiny_path):
    torch.manual_seed(2)
    policy = make_policy(tiny_path, eos_bias=0.0, max_new_tokens=8)  # turns run to max_new_tokens
    rollout = policy.sample_episodes(PROMPTS, [{"tag": "a"}] * 2, [EchoEnv(), EchoEnv()],
                                     max_turns=2, max_total_tokens=400)
    assert rollout.turns.tolist() == [2, 2]
    assert rollout.completion_mask.sum(-1).tolist() == [16, 16]
    assert rollout.has_eos.tolist() == [False, False]  # the last turn ran out of max_new_tokens
    # A budget of 12 tokens: the first turn takes 8, the echo reply does not fit in the other 4.
    cut = policy.sample_episodes(PROMPTS, [{"tag": "a"}] * 2, [EchoEnv(), EchoEnv()], max_turns=4,
                                 max_total_tokens=12)
    assert cut.turns.tolist() == [1, 1] and cut.has_eos.tolist() == [False, False]
    assert cut.completion_attention_mask.sum(-1).tolist() == [8, 8]
    # A budget of 5: the first turn itself is cut at 5 tokens (no step on half a turn: return 0).
    short = policy.sample_episodes(PROMPTS, [{"tag": "a"}] * 2, [EchoEnv(), EchoEnv()], max_turns=4,
                                   max_total_tokens=5)
    assert short.completion_mask.sum(-1).tolist() == [5, 5]
    assert short.episode_rewards.tolist() == [0.0, 0.0] and short.has_eos.tolist() == [False, False]


def test_episode_log_prob_is_the_sum_of_its_turns_log_probs(tiny_path):
    torch.manual_seed(3)
    policy = make_policy(tiny_path, eos_bias=4.0)
    # Two episodes per prompt: the packed path (each prompt computed once) is the one exercised.
    prompts = [p for p in PROMPTS for _ in range(2)]
    rollout = policy.sample_episodes(prompts, [{"tag": "x"}] * 4, lambda: EchoEnv(), max_turns=3,
                                     max_total_tokens=200)
    assert shared_prompts.prompt_groups(rollout.prompt_ids, rollout.prompt_mask) is not None
    episode = policy.log_probs(rollout, reference=True)
    with torch.no_grad():  # the chunked head path attends and scores the same
        chunked = token_logps(policy.reference_model, rollout.prompt_ids, rollout.prompt_mask,
                              rollout.completion_ids, rollout.completion_mask,
                              policy.temperature, 3, rollout.completion_attention_mask).sum(-1)
    assert torch.allclose(chunked, episode, atol=1e-4)
    for i in range(4):
        prompt = rollout.prompt_ids[i][rollout.prompt_mask[i].bool()].tolist()
        ids = rollout.completion_ids[i].tolist()
        total = 0.0
        for start, end in turn_spans(rollout.completion_mask[i].tolist()):
            context = torch.tensor([prompt + ids[:start]])
            turn = torch.tensor([ids[start:end]])
            total += float(token_logps(policy.reference_model, context, torch.ones_like(context),
                                       turn, torch.ones_like(turn), policy.temperature).sum())
        assert float(episode[i]) == pytest.approx(total, abs=1e-4)
    assert len({round(float(x), 3) for x in episode}) == 4  # four episodes, not one repeated


# ------------------------------------------------------------------ the loop
@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("episodes")
    rows = [{"prompt": p, "tag": str(i)} for i, p in enumerate(PROMPTS * 2)]
    return write_jsonl(root / "train.jsonl", rows)


def trainer_for(tiny_path, data, run_dir, env_object, **overrides) -> RebelTrainer:
    values = dict(model_name_or_path=str(tiny_path), dataset=data, rewards=[], num_iterations=1,
                  prompts_per_iteration=2, num_generations=2, max_new_tokens=4, max_turns=2,
                  max_total_tokens=64, eval_prompts=0, lora_r=4, learning_rate=1e-2,
                  warmup_ratio=0.0,
                  mixed_precision="no", progress=False, tensorboard=False, save_every=0, seed=0,
                  output_dir=str(run_dir))
    values.update(overrides)
    return RebelTrainer(RebelConfig(**values), environment=env_object)


def distinct_returns():
    """A factory whose environments give every episode a different return (so REBEL's reward
    differences, hence its gradient, are nonzero for every row)."""
    counter = itertools.count(1)

    class Counting(EchoEnv):
        def __init__(self):
            self.bonus = float(next(counter))

        def step(self, text):
            messages, _, done = super().step(text)
            return messages, self.bonus, done

    return Counting


@pytest.mark.parametrize("algorithm", ["rebel", "rloo", "grpo"])
def test_loss_gradient_is_zero_at_every_environment_position(tiny_path, data, tmp_path, monkeypatch,
                                                             algorithm):
    # One plain forward with the full head (the chunked head has no logits tensor to hook):
    # logits column j predicts completion token j.
    monkeypatch.setattr(shared_prompts, "ENABLED", False)
    trainer = trainer_for(tiny_path, data, tmp_path / algorithm, distinct_returns(),
                          algorithm=algorithm, logprob_chunk_size=0)
    rollouts, logits = [], []
    sample = trainer.policy.sample_episodes
    monkeypatch.setattr(trainer.policy, "sample_episodes",
                        lambda *a, **k: rollouts.append(sample(*a, **k)) or rollouts[-1])

    def keep(module, inputs, output):
        if output.requires_grad:
            output.retain_grad()
            logits.append(output)

    hook = trainer.policy.model.get_output_embeddings().register_forward_hook(keep)
    try:
        metrics, _ = trainer.step()
    finally:
        hook.remove()
    rollout = rollouts[0]
    assert len(logits) == 1 and logits[0].grad is not None
    grad = logits[0].grad.abs().sum(-1)[:, :-1]  # (N, C): column j predicts completion token j
    scored = rollout.completion_mask.bool()
    env = rollout.completion_attention_mask.bool() & ~scored
    assert env.any() and torch.all(grad[env] == 0) and torch.all(grad[~scored] == 0)
    assert torch.all(grad[scored] > 0)
    assert metrics["environment/turns"] == pytest.approx(float(rollout.turns.float().mean()))
    assert metrics["environment/return"] == pytest.approx(float(rollout.episode_rewards.mean()))


@pytest.mark.parametrize("algorithm", ["rebel", "rloo", "grpo"])
def test_one_iteration_per_algorithm_logs_the_environment(tiny_path, data, tmp_path, algorithm):
    trainer = trainer_for(tiny_path, data, tmp_path / algorithm, TwoTurnEnv, algorithm=algorithm)
    trainer.train()
    line = json.loads((tmp_path / algorithm / "metrics.jsonl").read_text().splitlines()[0])
    assert line["environment/return"] == 1.5 and line["environment/turns"] == 2.0
    assert line["reward"] == pytest.approx(1.5)  # done ends cleanly: no missing-EOS penalty


def test_environment_refusals(tiny_path, data, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "rebel_rl.environments", None)  # an install without loaders
    with pytest.raises(ConfigError, match="cannot load environment specs"):
        trainer_for(tiny_path, data, tmp_path / "s", None, environment="builtin:guess_number")
    with pytest.raises(ConfigError, match="generation_backend hf"):
        trainer_for(tiny_path, data, tmp_path / "v", TwoTurnEnv, generation_backend="vllm")
    with pytest.raises(ConfigError, match="its class or a zero-argument callable"):
        trainer_for(tiny_path, data, tmp_path / "i", TwoTurnEnv())
