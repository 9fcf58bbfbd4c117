"""The registry entries of the online algorithms: each one's option group and what it needs and supports.

One entry per algorithm, registered once into the config layer's registry (config/algorithms.py), which
the config's validation, the command line and the trainer read. The entry's `objective` names the class
in training/online/objectives.py that turns a batch into the loss; that class's `build` makes whatever else the
algorithm needs (PPO its value model, REBEL's preference variant its judge). This module imports no
torch: `rebel train --help` reads it.

Adding an algorithm (docs/architecture.md): its loss in algorithms/, its Objective in objectives.py, its
entry here, its tests.
"""
from __future__ import annotations

from dataclasses import dataclass

from ...config.algorithms import AlgorithmSpec, register_algorithm
from ...config.base import (
    check_at_least_one,
    check_non_negative,
    check_positive,
    check_unit_interval,
)

OBJECTIVES = "rebel_rl.training.online.objectives"
BOTH_KINDS = ("causal_lm", "diffusion")


@dataclass
class RebelOptions:
    """REBEL (algorithms/rebel.py)."""

    eta: float = 1.0  # REBEL step size: the exact minimiser is pi_t * exp(eta * r)

    def validate(self) -> None:
        check_positive(self, ["eta"])


@dataclass
class PpoOptions:
    """Token-level PPO with a value model (algorithms/ppo.py); DDPO reads its clip_range too."""

    clip_range: float = 0.2  # ppo, ddpo: ratio clipping epsilon
    clip_range_value: float = 0.2  # ppo: value clipping around the old values
    vf_coef: float = 0.1  # ppo: weight of the value loss
    gamma: float = 1.0  # ppo: discount over completion tokens
    lam: float = 0.95  # ppo: GAE lambda
    value_model: str | None = None  # ppo: value-model init; default: the reward model if one is named, else the policy

    def validate(self) -> None:
        check_positive(self, ["clip_range", "clip_range_value"])
        check_non_negative(self, ["vf_coef"])
        check_unit_interval(self, ["gamma", "lam"])


@dataclass
class ReinforceOptions:
    """REINFORCE with a moving-average baseline (algorithms/reinforce.py)."""

    baseline_decay: float = 0.9  # reinforce: moving-average baseline b <- decay * b + (1 - decay) * mean reward

    def validate(self) -> None:
        check_unit_interval(self, ["baseline_decay"])


@dataclass
class IterativeDpoOptions:
    """Online DPO on each prompt's best and worst sample (algorithms/dpo.py)."""

    beta: float = 0.1  # iterative_dpo: DPO temperature (against pi_t, on the best and worst sample)

    def validate(self) -> None:
        check_positive(self, ["beta"])


@dataclass
class DdpoOptions:
    """DDPO for diffusion policies (algorithms/ddpo.py); its ratio clipping is ppo's clip_range."""

    ddpo_buffer_size: int = 16  # ddpo: rewards kept per prompt for its mean and std (DDPO's per-prompt stat tracking)
    ddpo_min_count: int = 16  # ddpo: a prompt with fewer kept rewards is normalised by the batch mean and std
    ddpo_adv_clip: float = 5.0  # ddpo: advantages are clipped to [-ddpo_adv_clip, ddpo_adv_clip]

    def validate(self) -> None:
        check_at_least_one(self, ["ddpo_buffer_size", "ddpo_min_count"])
        check_positive(self, ["ddpo_adv_clip"])


@dataclass
class GrpoOptions:
    """GRPO (algorithms/grpo.py): group-relative advantages, a clipped ratio, no value model."""

    epsilon: float = 0.2  # grpo: ratio clipping epsilon
    scale_rewards: bool = True  # grpo: divide each group's centred rewards by the group's std

    def validate(self) -> None:
        check_positive(self, ["epsilon"])


# The paper of each algorithm, cited by the model card of a run (training/run/hub.py).
REBEL_PAPER = ("REBEL: Reinforcement Learning via Regressing Relative Rewards. Gao, Chang, "
               "Zhan, Oertell, Swamy, Brantley, Joachims, Bagnell, Lee, Sun. NeurIPS 2024. "
               "arXiv 2404.16767")
REBEL_BIBTEX = r"""@inproceedings{gao2024rebel,
  title = {{REBEL}: Reinforcement Learning via Regressing Relative Rewards},
  author = {Gao, Zhaolin and Chang, Jonathan D. and Zhan, Wenhao and Oertell, Owen and
            Swamy, Gokul and Brantley, Kiant{\'e} and Joachims, Thorsten and
            Bagnell, J. Andrew and Lee, Jason D. and Sun, Wen},
  booktitle = {Advances in Neural Information Processing Systems},
  volume = {37},
  year = {2024},
  eprint = {2404.16767},
  archivePrefix = {arXiv}
}"""
PPO_PAPER = ("Proximal Policy Optimization Algorithms. Schulman, Wolski, Dhariwal, Radford, "
             "Klimov. 2017. arXiv 1707.06347")
PPO_BIBTEX = r"""@misc{schulman2017ppo,
  title = {Proximal Policy Optimization Algorithms},
  author = {Schulman, John and Wolski, Filip and Dhariwal, Prafulla and Radford, Alec and
            Klimov, Oleg},
  year = {2017},
  eprint = {1707.06347},
  archivePrefix = {arXiv}
}"""
RLOO_PAPER = ("Back to Basics: Revisiting REINFORCE Style Optimization for Learning from Human "
              "Feedback in LLMs. Ahmadian, Cremer, Galle, Fadaee, Kreutzer, Pietquin, Ustun, "
              "Hooker. ACL 2024. arXiv 2402.14740")
RLOO_BIBTEX = r"""@inproceedings{ahmadian2024rloo,
  title = {Back to Basics: Revisiting {REINFORCE} Style Optimization for Learning from
           Human Feedback in {LLMs}},
  author = {Ahmadian, Arash and Cremer, Chris and Gall{\'e}, Matthias and Fadaee, Marzieh and
            Kreutzer, Julia and Pietquin, Olivier and {\"U}st{\"u}n, Ahmet and Hooker, Sara},
  booktitle = {Proceedings of the 62nd Annual Meeting of the Association for Computational
               Linguistics},
  year = {2024},
  eprint = {2402.14740},
  archivePrefix = {arXiv}
}"""
REINFORCE_PAPER = ("Simple Statistical Gradient-Following Algorithms for Connectionist "
                   "Reinforcement Learning. Williams. Machine Learning 8, 229-256, 1992")
REINFORCE_BIBTEX = r"""@article{williams1992reinforce,
  title = {Simple Statistical Gradient-Following Algorithms for Connectionist
           Reinforcement Learning},
  author = {Williams, Ronald J.},
  journal = {Machine Learning},
  volume = {8},
  number = {3-4},
  pages = {229--256},
  year = {1992}
}"""
DPO_PAPER = ("Direct Preference Optimization: Your Language Model is Secretly a Reward Model. "
             "Rafailov, Sharma, Mitchell, Ermon, Manning, Finn. NeurIPS 2023. arXiv 2305.18290")
DPO_BIBTEX = r"""@inproceedings{rafailov2023dpo,
  title = {Direct Preference Optimization: Your Language Model is Secretly a Reward Model},
  author = {Rafailov, Rafael and Sharma, Archit and Mitchell, Eric and Ermon, Stefano and
            Manning, Christopher D. and Finn, Chelsea},
  booktitle = {Advances in Neural Information Processing Systems},
  volume = {36},
  year = {2023},
  eprint = {2305.18290},
  archivePrefix = {arXiv}
}"""
DDPO_PAPER = ("Training Diffusion Models with Reinforcement Learning. Black, Janner, Du, "
              "Kostrikov, Levine. 2023. arXiv 2305.13301")
DDPO_BIBTEX = r"""@misc{black2023ddpo,
  title = {Training Diffusion Models with Reinforcement Learning},
  author = {Black, Kevin and Janner, Michael and Du, Yilun and Kostrikov, Ilya and
            Levine, Sergey},
  year = {2023},
  eprint = {2305.13301},
  archivePrefix = {arXiv}
}"""
GRPO_PAPER = ("DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open Language Models. "
              "Shao, Wang, Zhu, Xu, Song, Bi, Zhang, Zhang, Li, Wu, Guo. 2024. arXiv 2402.03300")
GRPO_BIBTEX = r"""@misc{shao2024deepseekmath,
  title = {{DeepSeekMath}: Pushing the Limits of Mathematical Reasoning in Open Language Models},
  author = {Shao, Zhihong and Wang, Peiyi and Zhu, Qihao and Xu, Runxin and Song, Junxiao and
            Bi, Xiao and Zhang, Haowei and Zhang, Mingchuan and Li, Y. K. and Wu, Y. and
            Guo, Daya},
  year = {2024},
  eprint = {2402.03300},
  archivePrefix = {arXiv}
}"""


APO_PAPER = ("Accelerating RL for LLM Reasoning with Optimal Advantage Regression. Brantley, "
             "Chen, Gao, Lee, Sun, Zhan, Zhang. 2025. arXiv 2505.20686")
APO_BIBTEX = r"""@misc{brantley2025apo,
  title = {Accelerating {RL} for {LLM} Reasoning with Optimal Advantage Regression},
  author = {Brantley, Kiant{\'e} and Chen, Mingyu and Gao, Zhaolin and Lee, Jason D. and
            Sun, Wen and Zhan, Wenhao and Zhang, Xuezhou},
  year = {2025},
  eprint = {2505.20686},
  archivePrefix = {arXiv}
}"""


NORMALISES_ITSELF = "{name} normalises rewards per prompt itself: use reward_normalization none"
@dataclass
class ApoOptions:
    """A*-PO (algorithms/apo.py): regress beta2 * log(pi/pi_ref) onto r - V*, V* from pi_ref."""

    beta1: float = 0.5  # apo: V*'s temperature: V* = beta1 * log mean exp(r / beta1)
    beta2: float = 1e-3  # apo: weight of log(pi/pi_ref), the implicit KL (use kl_coef 0)
    vstar_samples: int = 8  # apo: pi_ref samples per prompt for V* (once per prompt)

    def validate(self) -> None:
        check_positive(self, ["beta1", "beta2"])
        check_at_least_one(self, ["vstar_samples"])


for spec in [
    AlgorithmSpec("rebel", f"{OBJECTIVES}:Rebel", RebelOptions, min_generations=2,
                  policy_kinds=BOTH_KINDS, pair_sources=("online", "hybrid", "offline"),
                  preferences=True, pairings=("all", "best_worst"),
                  label="REBEL", paper=REBEL_PAPER, bibtex=REBEL_BIBTEX),
    AlgorithmSpec("ppo", f"{OBJECTIVES}:Ppo", PpoOptions, sharding=False,
                  other_kind_hint="algorithm ppo is token-level PPO with a value model for causal "
                                  "LMs: for a diffusion policy use ddpo (DDPO-style PPO, no value "
                                  "model)",
                  reward_normalization="reward_normalization {value!r} does not apply to ppo (it "
                                       "whitens its advantages): use none",
                  label="PPO", paper=PPO_PAPER, bibtex=PPO_BIBTEX),
    AlgorithmSpec("rloo", f"{OBJECTIVES}:Rloo", min_generations=2, policy_kinds=BOTH_KINDS,
                  label="RLOO", paper=RLOO_PAPER, bibtex=RLOO_BIBTEX),
    AlgorithmSpec("reinforce", f"{OBJECTIVES}:Reinforce", ReinforceOptions,
                  policy_kinds=BOTH_KINDS,
                  label="REINFORCE", paper=REINFORCE_PAPER, bibtex=REINFORCE_BIBTEX),
    AlgorithmSpec("iterative_dpo", f"{OBJECTIVES}:IterativeDpo", IterativeDpoOptions,
                  min_generations=2, policy_kinds=BOTH_KINDS,
                  label="Iterative DPO", paper=DPO_PAPER, bibtex=DPO_BIBTEX),
    AlgorithmSpec("ddpo", f"{OBJECTIVES}:Ddpo", DdpoOptions, policy_kinds=("diffusion",),
                  other_kind_hint="algorithm ddpo is PPO for diffusion policies: for a causal LM "
                                  "use ppo",
                  reward_normalization=NORMALISES_ITSELF.format(name="ddpo"),
                  label="DDPO", paper=DDPO_PAPER, bibtex=DDPO_BIBTEX),
    AlgorithmSpec("grpo", f"{OBJECTIVES}:Grpo", GrpoOptions, min_generations=2,
                  policy_kinds=BOTH_KINDS,
                  reward_normalization=NORMALISES_ITSELF.format(name="grpo"),
                  label="GRPO", paper=GRPO_PAPER, bibtex=GRPO_BIBTEX),
    AlgorithmSpec("apo", f"{OBJECTIVES}:Apo", ApoOptions,
                  reward_normalization="apo regresses the raw score onto V*: use "
                                       "reward_normalization none",
                  label="A*-PO", paper=APO_PAPER, bibtex=APO_BIBTEX),
]:
    register_algorithm(spec)
