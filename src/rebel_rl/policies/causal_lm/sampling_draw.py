"""The random draw of each sampled token, by inverse CDF instead of `torch.multinomial`.

`generate(do_sample=True)` draws every token with `torch.multinomial(softmax(scores), 1)`, whose
one-sample path draws one exponential variate per vocabulary entry (the exponential race, the same
work as the Gumbel-max trick): rows x 49,152 random numbers and logarithms per decoding step,
77 ms for 32 rows on one CPU thread here. Inverse-CDF sampling draws one uniform u per row and
takes the first token whose cumulative probability exceeds u * total: one exp pass, one cumsum
and a binary search, 13 ms for the same rows.

Both give exactly the distribution softmax(logits / temperature) (restricted by top-k / top-p when
set). `generate` has no hook for its draw, so `generate_kwargs` makes a sampling config greedy and
appends a logits processor that makes the draw and returns scores that are 0 at the drawn token
and -inf elsewhere: greedy decoding's argmax then picks it. Temperature, top-k and top-p are
applied by transformers' own warpers, in the order `generate` applies them when it samples.
Tokens for a given seed differ from multinomial's (another use of the random stream); the
distribution does not (tests/test_sampling_draw.py).
"""
from __future__ import annotations

import copy

import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList
from transformers.generation.logits_process import (TemperatureLogitsWarper, TopKLogitsWarper,
                                                    TopPLogitsWarper)

DRAW = "inverse_cdf"  # "multinomial": generate's own draw (benchmarks/long_completions.py compares)


class InverseCDFDraw(LogitsProcessor):
    """Draw one token per row from softmax(scores) by inverse CDF: 0 there, -inf elsewhere."""

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """Scores (rows, vocab) after the warpers -> one-hot log-weights of the drawn tokens.

        Unnormalised weights exp(s - max) suffice: u is drawn in [0, total). `right=True` maps u to
        the first token whose cumulative weight exceeds it, so a zero-probability token (masked by
        top-k / top-p) owns an empty interval and is never drawn."""
        weights = (scores - scores.amax(-1, keepdim=True)).exp_()
        cumulative = weights.cumsum_(-1)
        u = torch.rand(scores.shape[0], 1, device=scores.device, dtype=cumulative.dtype)
        u.mul_(cumulative[:, -1:])
        # Boundaries 0..V-2: an index of V-1 means the last token, so rounding never overflows.
        drawn = torch.searchsorted(cumulative[:, :-1].contiguous(), u, right=True)
        out = torch.full_like(scores, float("-inf"))
        return out.scatter_(1, drawn, 0.0)


def generate_kwargs(config: GenerationConfig) -> dict:
    """`generate` keyword arguments that sample as `config` says: the config unchanged when the
    draw is multinomial or the config does not sample (or uses beams); else a greedy copy and the
    warpers followed by `InverseCDFDraw` as `logits_processor`."""
    if DRAW != "inverse_cdf" or not config.do_sample or (config.num_beams or 1) > 1:
        return {"generation_config": config}
    warpers = LogitsProcessorList()
    if config.temperature is not None and config.temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(config.temperature))
    if config.top_k:
        warpers.append(TopKLogitsWarper(config.top_k))
    if config.top_p is not None and config.top_p < 1.0:
        warpers.append(TopPLogitsWarper(config.top_p))
    warpers.append(InverseCDFDraw())
    greedy = copy.deepcopy(config)
    greedy.do_sample = False
    greedy.temperature, greedy.top_k, greedy.top_p = None, None, None
    return {"generation_config": greedy, "logits_processor": warpers}
