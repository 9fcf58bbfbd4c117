"""Multi-turn episodes of a causal LM: the policy and an environment take turns (episodes.py).

Each episode is ONE sequence. `prompt_ids` is the first rendering (the prompt's messages and the
environment's opening ones, up to the first generation prompt); `completion_ids` is everything after
it: the policy's turns and, between them, the template's closing of each turn, the environment's
messages and the next generation prompt. The sequence is built from ids: the policy's sampled ids go
in unchanged (its text is never re-tokenised) and what follows a turn is the difference of two
renderings of the dialogue (text), tokenised on its own. So at every turn the policy continues
exactly the ids it will be scored on. `completion_mask` is 1 on the policy's own tokens (each turn's
end-of-turn/EOS token included), 0 on the rest; `completion_attention_mask` is 1 on every dialogue
token. Generation is batched over the episodes still running: one `generate` call per turn.

An episode ends when the environment says done, after `max_turns` policy turns, or when the next
turn would not fit in `max_total_tokens` completion tokens. `has_eos` is false only when the token
limit cut it (the last turn was cut, or the environment's reply did not fit) or when its last turn
ran out of `max_new_tokens` without EOS and the environment did not end it; `completions` is the
transcript after the prompt, decoded with the template's special tokens (role markers) kept.

`rollout_branches` samples REFUEL's rollouts (training/online/methods/refuel.py): per prompt one
dialogue from the policy to its end, a turn h drawn uniformly over the turns it played, then n
continuations of the SHARED prefix (the dialogue up to turn h's generation prompt) to their ends.
Each continuation plays against a fresh environment from the factory into which the prefix's
assistant messages are replayed (`_replay`), not a deepcopy of the branching one: a factory-made
environment may hold what copies badly (a subprocess, a socket, a time-out worker), and replay
needs only that reset(row) and step(text) be deterministic, which is checked (the replayed
replies and rewards must be the recorded ones; ConfigError otherwise). `completion_mask` is 1 on
turn h's response only: the prefix and the later policy turns are attended, not scored.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from transformers import GenerationConfig

from ..errors import ConfigError, ModelError
from ..sharding import ready_to_generate
from .episodes import Environment, Message
from .causal_lm.text import TextRollout, first_eos_mask


@dataclass
class _Episode:
    """One running episode: its dialogue, its ids so far and which of them the policy sampled."""

    environment: Environment
    messages: list[Message]
    prompt: list[int]
    completion: list[int] = field(default_factory=list)
    sampled: list[int] = field(default_factory=list)  # 1 per completion id the policy sampled
    reward: float = 0.0
    turns: int = 0
    finished: bool = False
    ended_cleanly: bool = False  # done, or the last turn ended with EOS: not cut by a limit
    opening: int = 0  # messages before the first policy turn (the prompt's and reset's)
    contents: list[str] = field(default_factory=list)  # each stepped turn's text, as step got it
    replies: list[list[Message]] = field(default_factory=list)  # each step's messages
    turn_rewards: list[float] = field(default_factory=list)  # each turn's step reward (0: no step)
    turn_starts: list[int] = field(default_factory=list)  # each turn's first completion position
    scored_turn: int | None = None  # mark only this turn's tokens in the mask (None: every turn)


@dataclass
class BranchedRollout(TextRollout):
    """REFUEL's episodes (`rollout_branches`): n consecutive rows per prompt that share the
    dialogue up to turn `branch_turns` and continue it independently; `completion_mask` is 1 on
    that turn's response only."""

    turn_rewards: torch.Tensor | None = field(default=None, kw_only=True)  # (N, H) 0 past the end
    branch_turns: torch.Tensor | None = field(default=None, kw_only=True)  # (N,) 0-based turn h


def render(tokenizer: Any, environment: Any, messages: list[Message],
           generation_prompt: bool) -> str:
    """The dialogue as text: the environment's own `render` where it has one (tools shown in the
    system prompt), else the tokenizer's chat template."""
    own = getattr(environment, "render", None)
    if callable(own):
        return own(tokenizer, messages, add_generation_prompt=generation_prompt)
    return tokenizer.apply_chat_template(messages, tokenize=False,
                                         add_generation_prompt=generation_prompt)


def _encode(tokenizer: Any, text: str) -> list[int]:
    # The template writes the special tokens it wants: add none.
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _after_turn(tokenizer: Any, episode: _Episode, turn_ids: list[int], content: str,
                replies: list[Message]) -> str:
    """The text that follows the policy's turn in the rendering of the dialogue with `replies`
    appended: the template's closing of the turn (what of it the policy did not sample), the
    replies and the next generation prompt. ModelError when the template does not render the
    dialogue so far as a prefix of the longer one (it rewrites earlier turns)."""
    before = render(tokenizer, episode.environment, episode.messages, True)
    assistant = [*episode.messages, {"role": "assistant", "content": content}]
    closed = render(tokenizer, episode.environment, assistant, False)
    following = render(tokenizer, episode.environment, assistant + replies, True)
    if not (closed.startswith(before) and following.startswith(closed)):
        raise ModelError("the chat template renders earlier turns differently once a turn is "
                         "added (e.g. it drops reasoning): multi-turn episodes need a template "
                         "whose rendering of a dialogue is a prefix of that of its continuation")
    turn = closed[len(before):]
    sampled = tokenizer.decode(turn_ids, skip_special_tokens=False,
                               clean_up_tokenization_spaces=False)
    if turn.startswith(sampled):
        closing = turn[len(sampled):]  # e.g. the "\n" after the end-of-turn token it sampled
    elif turn.startswith(content):
        closing = turn[len(content):]  # its EOS is not the template's: close the turn as it does
    else:
        raise ModelError(f"the chat template rewrites the assistant's text (renders {turn[:40]!r} "
                         f"for {content[:40]!r}): multi-turn episodes need it rendered verbatim")
    return closing + following[len(closed):]


def rollout_episodes(policy: Any, prompts: list, rows: list[dict],
                     environments: list | Callable[[], Any], *, max_turns: int,
                     max_total_tokens: int, reference: bool = False,
                     temperature: float | None = None) -> TextRollout:
    """Play one episode per prompt with `policy` (a CausalLMPolicy) sampling the assistant turns,
    prompt i against `environments[i]` (or a fresh one from a factory callable), reset with
    `rows[i]`; a TextRollout whose rows are the episodes in order, with `episode_rewards` (the sum
    of step rewards), `turns` and `completion_attention_mask` set (module docstring)."""
    _check_template(policy.tokenizer)
    if callable(environments) and not isinstance(environments, list):
        environments = [environments() for _ in prompts]
    if len(environments) != len(prompts) or len(rows) != len(prompts):
        raise ConfigError(f"{len(prompts)} prompts need as many rows and environments, got "
                          f"{len(rows)} and {len(environments)}: one environment per episode")
    episodes = [_start(policy.tokenizer, prompt, row, environment)
                for prompt, row, environment in zip(prompts, rows, environments)]
    _play(policy, episodes, max_turns, max_total_tokens, reference, temperature)
    return _to_rollout(policy, episodes)


def rollout_branches(policy: Any, prompts: list, rows: list[dict],
                     make_environment: Callable[[], Any], n: int, *, max_turns: int,
                     max_total_tokens: int, reference: bool = False) -> BranchedRollout:
    """REFUEL's rollouts (module docstring): per prompt i (reset with `rows[i]`) one dialogue to
    its end, a turn h uniform over the turns it played, and n continuations of its prefix up to
    turn h, each against a fresh `make_environment()` replayed to the prefix; n consecutive rows
    per prompt. h is drawn from a generator seeded by the global torch RNG before any sampling
    (the loop seeds it per (seed, iteration, process), so a resumed run draws the same turns)."""
    tokenizer = policy.tokenizer
    _check_template(tokenizer)
    generator = torch.Generator().manual_seed(int(torch.randint(2 ** 62, ())))
    first = [_start(tokenizer, prompt, row, make_environment())
             for prompt, row in zip(prompts, rows)]
    _play(policy, first, max_turns, max_total_tokens, reference)
    branches = []
    for prompt, row, episode in zip(prompts, rows, first):
        turn = int(torch.randint(episode.turns, (), generator=generator))
        environments = [make_environment() for _ in range(n)]
        if len({id(e) for e in environments}) < n:
            raise ConfigError("the environment factory returned one instance twice: REFUEL plays "
                              "each continuation against its own, so it must return a new one")
        branches += [_replay(tokenizer, episode, turn, prompt, row, e) for e in environments]
    _play(policy, branches, max_turns, max_total_tokens, reference)
    turns = max(e.turns for e in branches)
    rewards = [e.turn_rewards + [0.0] * (turns - len(e.turn_rewards)) for e in branches]
    return _to_rollout(policy, branches, BranchedRollout,
                       turn_rewards=torch.tensor(rewards, dtype=torch.float32),
                       branch_turns=torch.tensor([e.scored_turn for e in branches]))


def _check_template(tokenizer: Any) -> None:
    if getattr(tokenizer, "chat_template", None) is None:
        raise ConfigError("multi-turn episodes render the dialogue with the tokenizer's chat "
                          "template, and this tokenizer has none: set tokenizer.chat_template")


def _start(tokenizer: Any, prompt: Any, row: dict, environment: Any) -> _Episode:
    """A new episode: the environment's opening messages (it sees the row, prompt included), or
    the row's prompt when it opens with none (episodes.py), rendered."""
    messages = list(environment.reset({**row, "prompt": prompt}))
    if not messages:
        is_text = isinstance(prompt, str)
        messages = [{"role": "user", "content": prompt}] if is_text else list(prompt)
    text = render(tokenizer, environment, messages, True)
    return _Episode(environment, messages, _encode(tokenizer, text), opening=len(messages))


def _replay(tokenizer: Any, episode: _Episode, turn: int, prompt: Any, row: dict,
            environment: Any) -> _Episode:
    """A continuation of `episode` from the start of its turn `turn`: `environment` (fresh) reset
    with `row` and stepped with the episode's first `turn` assistant messages, each reply and
    reward checked against the recorded one; the prefix's ids are the episode's, unscored."""
    fresh = _start(tokenizer, prompt, row, environment)
    messages = fresh.messages
    same = messages == episode.messages[:episode.opening]
    for k in range(turn):
        if not same:
            break
        replies, reward, done = environment.step(episode.contents[k])
        same = (list(replies) == episode.replies[k] and float(reward) == episode.turn_rewards[k]
                and not done)
        messages += [{"role": "assistant", "content": episode.contents[k]}, *replies]
    if not same:
        raise ConfigError(
            f"environment {type(environment).__name__} is not deterministic: replaying the shared "
            "prefix into a fresh instance gave other messages or rewards; REFUEL replays it, so "
            "make reset(row) and step(text) deterministic (seed any randomness from the row)")
    start = episode.turn_starts[turn]
    return _Episode(environment, messages, episode.prompt, episode.completion[:start],
                    [0] * start, sum(episode.turn_rewards[:turn]), turn,
                    opening=episode.opening, contents=episode.contents[:turn],
                    replies=episode.replies[:turn], turn_rewards=episode.turn_rewards[:turn],
                    turn_starts=episode.turn_starts[:turn], scored_turn=turn)


def _play(policy: Any, episodes: list[_Episode], max_turns: int, max_total_tokens: int,
          reference: bool, temperature: float | None = None) -> None:
    """Play every episode to its end, one batched turn of the live ones at a time."""
    for _ in range(max_turns):
        live = [e for e in episodes if not e.finished]
        if not live:
            break
        _play_turn(policy, live, max_total_tokens, max_turns, reference, temperature)


@torch.no_grad()
def _play_turn(policy: Any, live: list[_Episode], max_total_tokens: int, max_turns: int,
               reference: bool, temperature: float | None = None) -> None:
    """One policy turn of every live episode (one batched `generate`), then each one's step."""
    tokenizer = policy.tokenizer
    budgets = [max_total_tokens - len(e.completion) for e in live]
    batch = tokenizer.pad({"input_ids": [e.prompt + e.completion for e in live]}, padding=True,
                          return_tensors="pt")
    input_ids = batch["input_ids"].to(policy.device)
    attention_mask = batch["attention_mask"].to(policy.device)
    # `is None`, not `or`: an explicit temperature is used as given, never swapped silently.
    temperature = policy.temperature if temperature is None else temperature
    config = GenerationConfig(do_sample=True, temperature=temperature, top_k=policy.top_k,
                              top_p=policy.top_p,
                              max_new_tokens=min(policy.max_new_tokens, max(budgets)),
                              eos_token_id=policy.eos_token_ids.tolist(),
                              pad_token_id=tokenizer.pad_token_id)
    with (policy.sampling_model(reference) as model, ready_to_generate(model) as extra,
          policy.autocast()):
        output = model.generate(input_ids=input_ids, attention_mask=attention_mask,
                                generation_config=config, **extra)
    generated = output[:, input_ids.shape[1]:].cpu()
    kept, has_eos = first_eos_mask(generated, policy.eos_token_ids)
    for episode, ids, length, eos, budget in zip(live, generated, kept.sum(-1), has_eos, budgets):
        # A turn longer than the episode's budget is cut there: as if sampled with that limit.
        turn_ids = ids[: min(int(length), budget)].tolist()
        ended_with_eos = bool(eos) and int(length) <= budget
        scored = episode.scored_turn in (None, episode.turns)
        episode.turn_starts.append(len(episode.completion))
        episode.completion += turn_ids
        episode.sampled += [int(scored)] * len(turn_ids)
        episode.turns += 1
        if not ended_with_eos and len(episode.completion) >= max_total_tokens:
            episode.finished = True  # cut by the token limit mid-turn: no step on half a turn
            episode.turn_rewards.append(0.0)
            continue
        content = tokenizer.decode(turn_ids, skip_special_tokens=True)
        replies, reward, done = episode.environment.step(content)
        episode.reward += float(reward)
        episode.contents.append(content)
        episode.replies.append(list(replies))
        episode.turn_rewards.append(float(reward))
        episode.ended_cleanly = bool(done) or ended_with_eos
        if done or episode.turns == max_turns:  # max_turns: clean if the turn ended with EOS
            episode.finished = True  # nothing follows the last turn: the sequence ends with it
            continue
        text = _after_turn(tokenizer, episode, turn_ids, content, list(replies))
        following = _encode(tokenizer, text)
        episode.messages += [{"role": "assistant", "content": content}, *replies]
        if len(episode.completion) + len(following) >= max_total_tokens:
            episode.finished, episode.ended_cleanly = True, False  # the next turn would not fit
            continue
        episode.completion += following
        episode.sampled += [0] * len(following)


def _to_rollout(policy: Any, episodes: list[_Episode], kind: type = TextRollout,
                **extra: torch.Tensor) -> TextRollout:
    """Episodes as one rollout of `kind` (with the `extra` fields): prompts left-padded,
    completions right-padded."""
    tokenizer, pad = policy.tokenizer, policy.tokenizer.pad_token_id
    prompt_width = max(len(e.prompt) for e in episodes)
    width = max(1, max(len(e.completion) for e in episodes))

    def rows(lists: list[list[int]], value: int, left: bool, size: int) -> torch.Tensor:
        fill = [[value] * (size - len(x)) for x in lists]
        padded = [f + x if left else x + f for f, x in zip(fill, lists)]
        return torch.tensor(padded, dtype=torch.long, device=policy.device)

    completions = [e.completion for e in episodes]
    return kind(
        prompt_ids=rows([e.prompt for e in episodes], pad, True, prompt_width),
        prompt_mask=rows([[1] * len(e.prompt) for e in episodes], 0, True, prompt_width),
        completion_ids=rows(completions, pad, False, width),
        completion_mask=rows([e.sampled for e in episodes], 0, False, width),
        has_eos=torch.tensor([e.ended_cleanly for e in episodes], device=policy.device),
        completions=tokenizer.batch_decode(completions, skip_special_tokens=False,
                                           clean_up_tokenization_spaces=False),
        completion_attention_mask=rows([[1] * len(c) for c in completions], 0, False, width),
        episode_rewards=torch.tensor([e.reward for e in episodes], dtype=torch.float32),
        turns=torch.tensor([e.turns for e in episodes], dtype=torch.long),
        **extra,
    )
