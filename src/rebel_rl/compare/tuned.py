"""Per-method settings of the comparison, chosen by the validation sweep (`rebel compare --sweep true`,
docs/tuning.md): the learning rate (and epochs) that gave the best validation win rate. Everything else
(budget, reward, KL term, EOS penalty, sampling) is shared and lives in CompareConfig. `minibatches` is
the number of optimizer steps per epoch (the iteration's prompts split evenly)."""

TUNED: dict[str, dict] = {
    # pinned, so a saved result is only reused for the same training (library defaults may change)
    "sft_stage": {"num_epochs": 6, "batch_size": 8, "learning_rate": 3e-3, "mixed_precision": "no", "seed": 0},
    "reward_model_stage": {"num_epochs": 2, "batch_size": 16, "learning_rate": 1e-3, "mixed_precision": "no", "seed": 0},
    "dpo": {"learning_rate": 1e-4, "beta": 0.1, "num_epochs": 1},
    "iterative_dpo": {"learning_rate": 3e-4, "beta": 0.1, "num_epochs": 1, "minibatches": 2},
    "ppo": {"learning_rate": 1e-4, "num_epochs": 2, "minibatches": 2},
    "reinforce": {"learning_rate": 3e-4, "num_epochs": 1, "minibatches": 2},
    "rloo": {"learning_rate": 1e-4, "num_epochs": 1, "minibatches": 2},
    "rebel": {"learning_rate": 1e-4, "eta": 1.0, "num_epochs": 2, "minibatches": 2},
}

# The sweep: these learning rates for every trained method, one seed, judged on the validation split.
SWEEP_LEARNING_RATES = [3e-5, 1e-4, 3e-4]
