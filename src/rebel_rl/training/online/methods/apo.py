"""A*-PO (algorithms/apo.py): regress beta2 * log(pi/pi_ref) onto r - V*, V* estimated once per
prompt from pi_ref samples. Its options, its objective and its registry entry."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ....config.algorithms import AlgorithmSpec, register_algorithm
from ....config.base import check_at_least_one, check_positive, option
from .base import Objective


@dataclass
class ApoOptions:
    """A*-PO (algorithms/apo.py): regress beta2 * log(pi/pi_ref) onto r - V*, V* from pi_ref.

    The defaults are the paper's (arXiv 2505.20686), as its authors' scripts set them
    (ZhaolinGao/A-PO, scripts/apo_gsm8k.sh and apo_math.sh: beta1=0.5, beta2=1e-3,
    num_gen_to_use=8), so a run without options is the published setting."""

    beta1: float = option(0.5, "apo: V*'s temperature: V* = beta1 * log mean exp(r / beta1)")
    beta2: float = option(1e-3, "apo: weight of log(pi/pi_ref), the implicit KL (use kl_coef 0)")
    vstar_samples: int = option(8, "apo: pi_ref samples per prompt for V* (once per prompt)")

    def validate(self) -> None:
        check_positive(self, ["beta1", "beta2"])
        check_at_least_one(self, ["vstar_samples"])


class Apo(Objective):
    """A*-PO (algorithms/apo.py). Stage 1: V*(x) from `vstar_samples` samples of pi_ref, scored by
    the run's score, the first time a prompt is seen (cached, and kept in checkpoints). Stage 2: the
    loop's samples of pi_t, regressing beta2 * (log pi_theta - log pi_ref) onto score - V*;
    log pi_ref is old_logps - kl, so no extra forward."""

    def __init__(self, options, n: int, score: Callable) -> None:
        super().__init__(options, n)
        self.score = score
        self.vstar: dict[str, float] = {}  # prompt key -> V*(x)
        self.new_queries = 0  # pi_ref completions scored for V* in the last `prepare`

    @classmethod
    def build(cls, options, context):
        """Needs the loop's scoring (`context.score`) to score the pi_ref samples for V*."""
        if context.score is None:
            raise ValueError("apo needs BuildContext.score (the loop's scoring) to compute V*")
        return cls(options, context.num_generations, context.score)

    @staticmethod
    def prompt_key(prompt: Any) -> str:
        """The cache key of a prompt (a string, or chat messages)."""
        return prompt if isinstance(prompt, str) else repr(prompt)

    def prepare(self, batch, policy):
        import torch

        from ....algorithms.apo import optimal_value

        keys = [self.prompt_key(p) for p in batch.prompts]
        first_row: dict[str, int] = {}  # prompts without V* yet -> their first row
        for row, key in enumerate(keys):
            if key not in self.vstar:
                first_row.setdefault(key, row)
        k, rows = self.options.vstar_samples, list(first_row.values())
        self.new_queries = len(rows) * k
        if rows:
            prompts = [batch.prompts[i] for i in rows]
            with torch.no_grad():
                rollout = policy.sample(prompts, k, reference=True)
            columns = {name: [values[i] for i in rows for _ in range(k)]
                       for name, values in batch.columns.items()}
            score = self.score([p for p in prompts for _ in range(k)], rollout, columns)
            values = optimal_value(score.view(-1, k).float(), self.options.beta1)
            self.vstar.update(zip(first_row, values.tolist()))
        vstar = torch.tensor([self.vstar[key] for key in keys], device=batch.score.device)
        batch.extra["vstar"] = vstar
        return {"apo/vstar_mean": float(vstar.mean()), "apo/new_prompts": float(len(rows)),
                "apo/advantage_mean": float((batch.score.float() - vstar).mean())}

    def reward_queries(self, num_rows: int) -> int:
        """The iteration's rows plus the pi_ref samples scored for V* of its new prompts."""
        return num_rows + self.new_queries

    def loss(self, batch, policy):
        from ....algorithms.apo import apo_loss

        ref_logps = batch.old_logps - batch.kl
        loss = apo_loss(batch.log_probs(policy), ref_logps, batch.score, batch.extra["vstar"],
                        self.options.beta2)
        return loss, {}

    def state_dict(self):
        return {"vstar": dict(self.vstar)}

    def load_state_dict(self, state):
        self.vstar = dict(state.get("vstar", {}))


PAPER = ("Accelerating RL for LLM Reasoning with Optimal Advantage Regression. Brantley, "
         "Chen, Gao, Lee, Sun, Zhan, Zhang. 2025. arXiv 2505.20686")
BIBTEX = r"""@misc{brantley2025apo,
  title = {Accelerating {RL} for {LLM} Reasoning with Optimal Advantage Regression},
  author = {Brantley, Kiant{\'e} and Chen, Mingyu and Gao, Zhaolin and Lee, Jason D. and
            Sun, Wen and Zhan, Wenhao and Zhang, Xuezhou},
  year = {2025},
  eprint = {2505.20686},
  archivePrefix = {arXiv}
}"""

register_algorithm(AlgorithmSpec(
    "apo", Apo, ApoOptions, rollout="single_turn",  # V* scores single-turn pi_ref samples
    reward_normalization="apo regresses the raw score onto V*: use reward_normalization none",
    label="A*-PO", paper=PAPER, bibtex=BIBTEX,
    summary="least squares of beta2·log(pi/pi_ref) onto score − V*, V* = beta1·log mean "
            "exp(score/beta1) over `vstar_samples` pi_ref samples, once per prompt"))
