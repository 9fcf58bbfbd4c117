"""The built-in tasks. Each registers its prompt sets, rewards and models into the registries that
the lower layers own (data/builtin.py, rewards/builtin.py, models/builtin.py);
`rebel_rl/__init__.py` imports this package, so every lookup there sees them. Registering is cheap:
the task modules imported here need neither torch nor `datasets` at import time, and heavier entries
are "module:function" references, imported on first use.
"""
from __future__ import annotations

from rebel_rl.data.builtin import register_prompts
from rebel_rl.environments.loading import register_environment
from rebel_rl.models.builtin import register_model
from rebel_rl.rewards.builtin import register_preference, register_reward
from rebel_rl.tasks import animals, guess_number, positive_sentiment, reasoning, summarization
from rebel_rl.tasks.digits import policy as digits_policy
from rebel_rl.tasks.digits import prompts as digits_prompts

register_prompts("positive_sentiment", positive_sentiment.load, tuple(positive_sentiment.SPLITS))

# A TL;DR-like summarization task (docs/summarization_task.md): posts with references and judge
# facts, SFT pairs (prompt, completion), and judge-labelled preference pairs (prompt, chosen,
# rejected); the gold judge as rewards (evaluation) and as a preference.
register_prompts("tldr", summarization.load_tldr, summarization.SPLITS)
register_prompts("tldr_sft", summarization.load_tldr_sft, summarization.SFT_SPLITS)
register_prompts("tldr_preferences", summarization.load_tldr_preferences, summarization.SPLITS)
register_reward("tldr_judge", "rebel_rl.tasks.summarization_rewards:tldr_judge")
register_reward("tldr_win_rate", "rebel_rl.tasks.summarization_rewards:tldr_win_rate")
register_preference(
    "tldr_judge_preference", "rebel_rl.tasks.summarization_rewards:tldr_judge_preference"
)

# Images (docs/images.md): prompts naming a digit, the digits denoiser and its digit_quality reward;
# DDPO's animals for text-to-image pipelines.
register_prompts("digits", digits_prompts.load_digit_prompts, tuple(digits_prompts.SPLITS))
register_reward("digit_quality", "rebel_rl.tasks.digits.quality:digit_quality")
register_model("digits-denoiser", "rebel_rl.tasks.digits.policy:load_digits_policy",
               lora_targets=digits_policy.LORA_TARGETS, kind="diffusion",
               recognizes=digits_policy.is_saved_denoiser)
register_prompts("animals", animals.load_animal_prompts, animals.SPLITS)

# Reasoning with a verifier (docs/reasoning.md): reasoning-gym arithmetic problems with an `answer`
# column for the verifier rewards math_answer / answer_tag_format (rewards/verifiers.py).
register_prompts("arithmetic", reasoning.load_arithmetic, reasoning.SPLITS)

# Multi-turn (docs/multiturn.md): guess a hidden number from higher/lower feedback; the environment
# reads each row's secret.
register_prompts("guess_number", guess_number.load_guess_number, guess_number.SPLITS)
register_environment("guess_number", guess_number.GuessNumberEnvironment)
# The arithmetic problems with a calculator tool (tools as an environment; use with
# dataset=builtin:arithmetic); registered by reference, so importing it waits until it is used.
register_environment("calculator", "rebel_rl.tasks.calculator:calculator_environment")
