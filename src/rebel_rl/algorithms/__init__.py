"""Pure loss functions over tensors, one file per algorithm."""
from .apo import apo_loss, optimal_value
from .dpo import dpo_loss
from .grpo import grpo_advantages, grpo_loss
from .ppo import gae, ppo_policy_loss, ppo_value_loss, token_rewards, whiten
from .rebel import rebel_loss, rebel_preference_loss
from .refuel import refuel_loss, reward_to_go
from .reinforce import policy_gradient_loss, update_moving_baseline
from .rloo import rloo_advantages

__all__ = ["rebel_loss", "rebel_preference_loss", "dpo_loss", "policy_gradient_loss",
           "update_moving_baseline", "rloo_advantages", "gae", "ppo_policy_loss", "ppo_value_loss",
           "token_rewards", "whiten", "grpo_advantages", "grpo_loss", "apo_loss", "optimal_value",
           "refuel_loss", "reward_to_go"]
