"""Loading environments from each spec form, one-line errors for bad ones, time-outs and failure
scores, the OpenEnv and TRL adapters, and the built-in guess_number task's exact feedback."""
from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

import rebel_rl  # noqa: F401 - registers the built-ins
from rebel_rl.config.run import EnvironmentConfig
from rebel_rl.environments import (
    EnvironmentFactory,
    environment_factory,
    from_openenv,
    from_trl,
    load_environment,
)
from rebel_rl.errors import ConfigError, EpisodeError
from rebel_rl.policies.episodes import Environment
from rebel_rl.tasks.guess_number import GuessNumberEnvironment, generate, parse_guess

ROW = {"secret": 9, "low": 1, "high": 15}
USER = [{"role": "user", "content": "go"}]


class Echo:
    """Two steps: reward 0.25 each; done on the second."""

    def __init__(self):
        self.turns = 0

    def reset(self, row):
        return list(USER)

    def step(self, text):
        self.turns += 1
        return [{"role": "user", "content": text.upper()}], 0.25, self.turns == 2


class Sleepy(Echo):
    def step(self, text):
        if self.turns == 1:
            time.sleep(30)
        return super().step(text)


class Raising(Echo):
    def step(self, text):
        raise ValueError("boom\nsecond line")


class Returning(Echo):
    output = None

    def step(self, text):
        return self.output


ENV_FILE = "class Game:\n    def reset(self, row):\n        return []\n" \
           "    def step(self, text):\n        return [], 1.0, True\n"


def test_each_spec_form_loads(tmp_path, monkeypatch):
    (tmp_path / "game.py").write_text(ENV_FILE)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_environment("builtin:guess_number") is GuessNumberEnvironment
    from_file = load_environment(f"{tmp_path}/game.py:Game")()
    assert from_file.step("x") == ([], 1.0, True)
    assert load_environment("game:Game")().step("x") == ([], 1.0, True)
    assert load_environment(Echo) is Echo
    made = EnvironmentFactory(lambda: Echo())()  # a zero-argument callable
    assert made.reset({}) == USER and isinstance(made, Environment)


@pytest.mark.parametrize("spec, kind, words", [
    ("builtin:nope", ConfigError, "unknown environment 'builtin:nope': the built-ins are"),
    ("just_a_name", ConfigError, "unknown environment 'just_a_name'"),
    ("no_such_module_xyz:Game", EpisodeError, "environment 'no_such_module_xyz:Game' does "
                                                  "not load: cannot import module"),
    ("missing.py:Game", EpisodeError, "file not found: missing.py"),
    ("json:NoSuchClass", EpisodeError, "attribute 'NoSuchClass' not found in json"),
    ("collections:OrderedDict", EpisodeError, "'collections:OrderedDict' has no reset or step"),
    (42, ConfigError, "environment 'int' is a int"),
])
def test_bad_specs_give_one_line(spec, kind, words):
    with pytest.raises(kind) as info:
        EnvironmentFactory(spec)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_instance_without_step_and_failing_factory_are_one_line():
    factory = EnvironmentFactory(lambda: SimpleNamespace(reset=lambda row: []))
    with pytest.raises(EpisodeError, match="has no step method"):
        factory()
    broken = EnvironmentFactory(lambda: 1 / 0)
    with pytest.raises(EpisodeError, match="could not be created: ZeroDivisionError"):
        broken()


@pytest.mark.parametrize("output, words", [
    ("text", "step 1 returned 'text': step must return a (messages, reward, done) tuple"),
    (([], 1.0), "must return a (messages, reward, done)"),
    (("hi", 1.0, True), "step 1 returned a str, not a list"),
    (([{"content": "x"}], 1.0, True), "step 1 message 0 is"),
    (([{"role": "user", "content": 3}], 1.0, True), "a string content"),
    (([], "1", True), "returned reward '1': it must be a finite number"),
    (([], float("nan"), True), "reward nan"),
    (([], True, True), "reward True"),
    (([], 1.0, 1), "done=1: it must be True or False"),
])
def test_wrong_step_shapes_raise_even_with_a_failure_score(output, words):
    Returning.output = output
    episode = EnvironmentFactory(Returning, step_failure_score=-1.0)()
    episode.reset({})
    with pytest.raises(EpisodeError) as info:
        episode.step("x")
    assert words in str(info.value) and "environment 'Returning'" in str(info.value)


def test_a_hanging_step_times_out_and_scores_the_episode():
    factory = EnvironmentFactory(Sleepy, step_timeout=0.5, step_failure_score=-1.0)
    episode = factory()
    assert episode.reset(ROW) == USER
    assert episode.step("a") == ([{"role": "user", "content": "A"}], 0.25, False)
    start = time.monotonic()
    messages, reward, done = episode.step("b")
    assert time.monotonic() - start < 2.0
    # the episode's return is exactly the failure score: 0.25 + (-1.25)
    assert (messages, reward, done) == ([], -1.25, True) and episode.episode_return == -1.0
    assert factory.take_counts() == {"environment/timeouts": 1.0, "environment/failures": 1.0}
    assert factory.take_counts() == {"environment/timeouts": 0.0, "environment/failures": 0.0}


def test_without_a_failure_score_a_timeout_or_a_raise_is_one_line():
    episode = EnvironmentFactory(Sleepy, step_timeout=0.3)()
    episode.reset(ROW)
    episode.step("a")
    with pytest.raises(EpisodeError, match=r"^environment 'Sleepy' step 2 timed out after "
                                               r"0.3 s; set step_failure_score"):
        episode.step("b")
    raising = EnvironmentFactory(Raising)()
    raising.reset(ROW)
    with pytest.raises(EpisodeError) as info:
        raising.step("a")
    assert str(info.value).startswith("environment 'Raising' step 1 raised ValueError: boom;")
    assert "second line" not in str(info.value)


def test_a_raising_step_with_a_score_ends_the_episode_and_counts():
    factory = EnvironmentFactory(Raising, step_failure_score=0.5)
    episode = factory()
    episode.reset(ROW)
    assert episode.step("a") == ([], 0.5, True)
    assert episode.step("again") == ([], 0.0, True)  # over: the env is not called again
    assert factory.take_counts() == {"environment/timeouts": 0.0, "environment/failures": 1.0}


def test_a_failed_reset_with_a_score_ends_before_the_first_step():
    class BadReset(Echo):
        def reset(self, row):
            raise KeyError("secret")

    episode = EnvironmentFactory(BadReset, step_failure_score=-2.0)()
    assert episode.reset(ROW) == [] and episode.ended
    assert episode.step("a") == ([], -2.0, True)


def test_environment_factory_from_config():
    assert environment_factory(EnvironmentConfig()) is None
    config = EnvironmentConfig(environment="builtin:guess_number", step_timeout=2.0,
                               step_failure_score=0.0)
    factory = environment_factory(config)
    assert factory.step_timeout == 2.0 and factory.step_failure_score == 0.0
    assert isinstance(factory().environment, GuessNumberEnvironment)


def test_openenv_adapter_with_observations_and_step_results():
    class Obs:
        def __init__(self, text, reward, done):
            self.text, self.reward, self.done = text, reward, done

    class Server:  # server-side OpenEnv: reset/step return an Observation
        def reset(self, seed=None):
            return Obs(f"seed {seed}", None, False)

        def step(self, action):
            return Obs(f"got {action['move']}", 1.0, action["move"] == "stop")

    factory = from_openenv(Server, action=lambda text: {"move": text.strip()},
                           reset_kwargs=lambda row: {"seed": row["seed"]})
    episode = EnvironmentFactory(factory)()
    assert episode.reset({"seed": 3}) == [{"role": "user", "content": "seed 3"}]
    assert episode.step(" go") == ([{"role": "user", "content": "got go"}], 1.0, False)
    assert episode.step("stop") == ([{"role": "user", "content": "got stop"}], 1.0, True)

    class Client:  # client-side OpenEnv: StepResult(observation, reward, done)
        def reset(self):
            return SimpleNamespace(observation=SimpleNamespace(message="hello"), reward=None,
                                   done=False)

        def step(self, action):
            return SimpleNamespace(observation=SimpleNamespace(message="bye"), reward=-0.5,
                                   done=True)

        def close(self):
            self.closed = True

    client = EnvironmentFactory(from_openenv(Client, action=str))()
    assert client.reset({}) == [{"role": "user", "content": "hello"}]
    assert not hasattr(client.environment.environment, "closed")
    assert client.step("x") == ([{"role": "user", "content": "bye"}], -0.5, True)
    assert client.environment.environment.closed  # closed when its episode ends


def test_trl_adapter_uses_public_methods_as_tools_and_reset_text():
    class Counter:
        def __init__(self):
            self.total = 0

        def reset(self, **columns):
            self.total = columns["start"]
            return f"Start at {self.total}."

        def add(self, amount: int) -> int:
            """Add to the counter.

            Args:
                amount: how much to add
            """
            self.total += amount
            return self.total

    def reward(messages, environment, target, **columns):
        return float(environment.total == target)

    episode = EnvironmentFactory(from_trl(Counter, reward=reward))()
    opening = episode.reset({"prompt": "Reach 7.", "start": 2, "target": 7})
    assert opening == [{"role": "user", "content": "Reach 7.\n\nStart at 2."}]
    call = '<tool_call>{"name": "add", "arguments": {"amount": 5}}</tool_call>'
    assert episode.step(call) == ([{"role": "tool", "name": "add", "content": "7"}], 0.0, False)
    assert episode.step("Done: 7") == ([], 1.0, True)
    assert [s["function"]["name"] for s in episode.environment.schemas] == ["add"]

    class NoArguments(Counter):
        def reset(self):  # TRL examples also write reset without row columns
            self.total = 0

    plain = EnvironmentFactory(from_trl(NoArguments))()
    assert plain.reset({"prompt": "Go.", "start": 2}) == [{"role": "user", "content": "Go."}]


def test_guess_number_feedback_and_rewards_exactly():
    env = GuessNumberEnvironment(max_turns=4)
    assert "from 1 to 15" in env.reset(ROW)[1]["content"]
    assert env.step("I guess 4") == ([{"role": "user", "content": "Higher."}], 0.0, False)
    assert env.step("12") == ([{"role": "user", "content": "Lower."}], 0.0, False)
    assert env.step("no idea") == ([{"role": "user", "content": "Please reply with one whole "
                                                                 "number."}], 0.0, False)
    assert env.step("Is it 9?") == ([{"role": "user", "content": "Correct!"}], 1.0, True)
    env.reset(ROW)
    for guess in ("1", "2", "3"):
        assert env.step(guess)[2] is False
    assert env.step("10") == ([{"role": "user", "content": "Lower. No guesses left: it was 9."}],
                              0.0, True)


def test_parse_guess_takes_the_last_whole_number():
    assert parse_guess("between 1 and 15, I pick 8.") == 8
    assert parse_guess("-3") == -3 and parse_guess("none") is None


def test_guess_number_splits_are_disjoint_seeded_and_binary_searchable():
    train, test = generate("train"), generate("test")
    assert len(train) == 768 and len(test) == 128 and generate("test") == test
    pairs = lambda rows: {(r["low"], r["secret"]) for r in rows}  # noqa: E731
    assert len(pairs(train)) == 768 and not pairs(train) & pairs(test)
    assert all(r["low"] <= r["secret"] <= r["high"] == r["low"] + 14 for r in train + test)
    wins = 0
    for row in test:  # halving the range always wins within 4 turns: the optimum is 1.0
        env, low, high = GuessNumberEnvironment(), row["low"], row["high"]
        env.reset(row)
        for _ in range(4):
            guess = (low + high) // 2
            (message,), reward, done = env.step(str(guess))
            low, high = (guess + 1, high) if message["content"] == "Higher." else (low, guess - 1)
            wins += reward
            if done:
                break
    assert wins == len(test)


def test_guess_number_dataset_registered():
    from rebel_rl.data.builtin import load_builtin_prompts

    data = load_builtin_prompts("guess_number", "test")
    assert data.column_names == ["prompt", "secret", "low", "high"] and len(data) == 128
    assert data[0]["prompt"] == GuessNumberEnvironment().reset(data[0])


def test_after_a_normal_end_steps_earn_nothing_and_reset_starts_over():
    episode = EnvironmentFactory(Echo, step_failure_score=-1.0)()
    episode.reset(ROW)
    episode.step("a")
    assert episode.step("b")[1:] == (0.25, True) and episode.episode_return == 0.5
    assert episode.step("c") == ([], 0.0, True)
    episode.reset(ROW)
    assert not episode.ended and episode.turn == 0 and episode.episode_return == 0.0
