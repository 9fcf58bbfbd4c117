"""Reward functions for the isolation and pool tests, written to a file that workers import."""
from __future__ import annotations

import pytest
import torch

from rebel_rl.rewards import RewardSet

REWARDS = '''
import asyncio, os, time

def hang(prompts, completions, **kw):
    time.sleep(3600)

def boom(prompts, completions, **kw):
    raise ValueError("verifier crashed")

def words(prompts, completions, **kw):
    return [float(len(c.split())) for c in completions]

def short(prompts, completions, **kw):
    return [1.0]

def pid(prompts, completions, **kw):
    return [float(os.getpid())] * len(completions)

async def async_words(prompts, completions, **kw):
    await asyncio.sleep(0.01)
    return [float(len(c.split())) for c in completions]

async def async_hang(prompts, completions, **kw):
    await asyncio.sleep(3600)

def tagged(prompts, completions, answer, completion_ids, **kw):
    return [10.0 * len(c.split()) + a + sum(ids) for c, a, ids in zip(completions, answer,
                                                                      completion_ids)]

def hang_on_x(prompts, completions, **kw):
    if "x" in completions:
        time.sleep(3600)
    return [float(len(c.split())) for c in completions]
'''
COMPLETIONS = ["a b", "c", "d e f"]
WORDS = [2.0, 1.0, 3.0]


@pytest.fixture(scope="module")
def reward_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("rewards") / "rewards.py"
    path.write_text(REWARDS)
    return str(path)


def score(reward_set: RewardSet) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    return reward_set(["p"] * len(COMPLETIONS), COMPLETIONS)
