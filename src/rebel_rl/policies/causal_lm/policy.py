"""A Hugging Face causal LM as a policy: sample completions, and compute their sequence log-probs.

log pi(y|x) is the sum of the completion tokens' log-probs up to and including the first EOS, under
logits divided by the sampling temperature: the distribution we sample from when top_k=0 and top_p=1
(the defaults). With top-k/top-p truncation on, log-probs stay those of the full tempered softmax,
as in TRL, so that they remain defined for every token. Prompts are left-padded and completions
right-padded; position ids follow the attention mask, exactly as `generate` computes them, so a
padded batch gives the same numbers as one sequence at a time.
"""
from __future__ import annotations

import contextlib
import copy
from pathlib import Path
from typing import Iterator

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, PreTrainedModel

from ...data import prompt_to_text
from ...errors import DataError, ModelError, first_line
from ...sharding import ready_to_generate
from ..base import Policy, PolicySupports
from .checkpointing import enable_gradient_checkpointing
from .chunked_head import chunkable_head, chunked_completion_logps, head_skipped
from .lora_sampling import adapter_folded, can_fold_adapter
from ..multiturn import rollout_branches, rollout_episodes
from .offline import rollout_from_text
from ...models.pretrained import model_load_errors, resolve_model_path
from .sampling_draw import generate_kwargs
from .shared_prompts import completion_logits, generate_sharing_prompts
from .text import TextRollout, concat_rollouts, first_eos_mask


def token_logps(
    model: torch.nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    temperature: float,
    chunk_size: int = 0,
    completion_attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-token log softmax(logits / temperature) of the completion tokens, 0 outside the mask; (N,
    C). Without gradients, a prompt repeated over consecutive rows is computed once
    (shared_prompts.py). `chunk_size` > 0 runs a plain Linear head over that many positions at a
    time, never holding the (N, C, vocab) logits (chunked_head.py); other heads, or 0, take the full
    path. `completion_attention_mask` (episodes: every dialogue token) is what the forward attends
    to; None attends to `completion_mask`, the tokens scored."""
    attended = completion_mask if completion_attention_mask is None else completion_attention_mask
    head = chunkable_head(model) if chunk_size > 0 else None
    if head is not None:
        with head_skipped(model):
            hidden = completion_logits(model, prompt_ids, prompt_mask, completion_ids, attended)
        logps = chunked_completion_logps(hidden, head, completion_ids, temperature, chunk_size)
        return logps * completion_mask
    logits = completion_logits(model, prompt_ids, prompt_mask, completion_ids, attended).float()
    logits = logits / temperature
    chosen = logits.gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1)
    return (chosen - logits.logsumexp(-1)) * completion_mask


def sequence_logps(*args, **kwargs) -> torch.Tensor:
    """log pi(y|x) per row, shape (N,): `token_logps` (same arguments) summed over the completion.
    """
    return token_logps(*args, **kwargs).sum(-1)


class CausalLMPolicy(Policy):
    """A causal LM with its tokenizer and a reference (the adapter disabled, or a frozen copy)."""

    supports = PolicySupports(description="a causal LM", default_temperature=0.7, sharding=True,
                              dataset_completions=True, images=False, gradient_checkpointing=True)

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer,
        *,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        max_prompt_length: int = 256,
        reference_model: torch.nn.Module | None = None,
        logprob_chunk_size: int = 128,
    ) -> None:
        super().__init__(model, temperature=temperature, reference_model=reference_model)
        self.logprob_chunk_size = logprob_chunk_size  # 0: the full logits (token_logps)
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.top_k = top_k
        self.top_p = top_p
        self.max_prompt_length = max_prompt_length
        self.eos_token_ids = torch.tensor(sorted(_eos_token_ids(self.model, tokenizer)))

    def encode_prompts(self, prompts: list) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded prompt ids and mask; a prompt longer than the limit is a DataError."""
        batch = self.tokenizer.pad({"input_ids": self.prompt_token_ids(prompts)}, padding=True,
                                   return_tensors="pt")
        return batch["input_ids"].to(self.device), batch["attention_mask"].to(self.device)

    def prompt_token_ids(self, prompts: list, first_index: int = 0) -> list[list[int]]:
        """Token ids of each prompt (chat template applied); DataError naming the first one too long
        for max_prompt_length or for the context window minus max_new_tokens."""
        # A chat template already writes the special tokens it wants.
        encoded = [self.tokenizer(prompt_to_text(p, self.tokenizer),
                                  add_special_tokens=not isinstance(p, list))["input_ids"]
                   for p in prompts]
        limit = self.max_prompt_length
        context = getattr(self.model.config, "max_position_embeddings", None)
        if context is not None:
            limit = min(limit, context - self.max_new_tokens)
        for index, ids in enumerate(encoded):
            if len(ids) > limit:
                raise DataError(
                    f"prompt {first_index + index} has {len(ids)} tokens, more than the {limit} "
                    f"allowed (max_prompt_length={self.max_prompt_length}, context window "
                    f"{context}, max_new_tokens={self.max_new_tokens}): shorten it or raise "
                    "max_prompt_length"
                )
        return encoded

    def check_prompts(self, prompts: list, chunk: int = 512) -> None:
        """Tokenize every prompt once up front, so a too-long one stops the run before training."""
        for start in range(0, len(prompts), chunk):
            self.prompt_token_ids(prompts[start:start + chunk], first_index=start)

    @contextlib.contextmanager
    def sampling_model(self, reference: bool = False) -> Iterator[torch.nn.Module]:
        """As for every policy, except that a LoRA policy on the CPU samples with its adapter folded
        into the weights (lora_sampling.py): the same numbers up to rounding, a fifth less time."""
        if reference or not can_fold_adapter(self.model):
            with super().sampling_model(reference) as model:
                yield model
        else:
            with adapter_folded(self.model) as model:
                yield model

    @torch.no_grad()
    def sample(self, prompts: list, n: int, *, reference: bool = False,
               temperature: float | None = None) -> TextRollout:
        """Sample `n` completions per prompt (rows grouped by prompt) from the policy or the
        reference."""
        temperature = self.temperature if temperature is None else temperature
        prompt_ids, prompt_mask = self.encode_prompts(prompts)
        config = GenerationConfig(
            do_sample=True,
            temperature=temperature,
            top_k=self.top_k,
            top_p=self.top_p,
            max_new_tokens=self.max_new_tokens,
            eos_token_id=self.eos_token_ids.tolist(),
            pad_token_id=self.tokenizer.pad_token_id,
        )
        with (self.sampling_model(reference) as model, ready_to_generate(model) as extra,
              self.autocast()):
            # Each token drawn by inverse CDF: multinomial's distribution, cheaper
            # (sampling_draw.py).
            output = generate_sharing_prompts(model, prompt_ids, prompt_mask, n,
                                              **generate_kwargs(config), **extra)
        prompt_ids, prompt_mask = (prompt_ids.repeat_interleave(n, dim=0),
                                   prompt_mask.repeat_interleave(n, dim=0))
        completion_ids = output[:, prompt_ids.shape[1]:]
        completion_mask, has_eos = first_eos_mask(completion_ids, self.eos_token_ids)
        kept = [ids[: int(length)] for ids, length in zip(completion_ids, completion_mask.sum(-1))]
        texts = self.tokenizer.batch_decode(kept, skip_special_tokens=True)
        return TextRollout(prompt_ids, prompt_mask, completion_ids, completion_mask, has_eos, texts)

    def log_probs(self, rollout: TextRollout, *, reference: bool = False,
                  temperature: float | None = None
                  ) -> torch.Tensor:
        """Sequence log-probs (N,) of the rollout's completions; differentiable unless `reference`.
        """
        return self.token_log_probs(rollout, reference=reference, temperature=temperature).sum(-1)

    def token_log_probs(self, rollout: TextRollout, *, reference: bool = False,
                        temperature: float | None = None
                        ) -> torch.Tensor:
        """Per-token log-probs (N, C) of the completions, 0 after the first EOS; differentiable
        unless `reference`."""
        temperature = self.temperature if temperature is None else temperature
        args = (rollout.prompt_ids, rollout.prompt_mask, rollout.completion_ids,
                rollout.completion_mask, temperature, self.logprob_chunk_size,
                rollout.completion_attention_mask)
        if reference:
            with torch.no_grad(), self.sampling_model(reference=True) as model, self.autocast():
                return token_logps(model, *args)
        # The prepared module autocasts only its own forward; the chunked head runs after it, so
        # without this region pi_t's head would be fp32 while pi_ref's (above) is bf16.
        with self.autocast():
            return token_logps(self.train_module, *args)

    def sample_episodes(self, prompts: list, rows: list[dict], environments: list, *,
                        max_turns: int, max_total_tokens: int,
                        reference: bool = False,
                        temperature: float | None = None) -> TextRollout:
        """One multi-turn episode per prompt (repeat a prompt for several), each against its own
        environment instance: see multiturn.py."""
        return rollout_episodes(self, prompts, rows, environments, max_turns=max_turns,
                                max_total_tokens=max_total_tokens, reference=reference,
                                temperature=temperature)

    def sample_branches(self, prompts: list, rows: list[dict], make_environment, n: int, *,
                        max_turns: int, max_total_tokens: int) -> TextRollout:
        """REFUEL's rollouts: n continuations per prompt of one shared dialogue prefix, each
        against its own fresh environment (multiturn.rollout_branches)."""
        return rollout_branches(self, prompts, rows, make_environment, n, max_turns=max_turns,
                                max_total_tokens=max_total_tokens)

    def rollout_from_text(self, prompts: list, completions: list) -> TextRollout:
        return rollout_from_text(self, prompts, completions)

    def concat(self, rollouts: list[TextRollout]) -> TextRollout:
        return concat_rollouts(rollouts, self.tokenizer.pad_token_id)

    def save_pretrained(self, path, model: torch.nn.Module | None = None,
                        state_dict: dict | None = None) -> None:
        """Save the trainable model (the adapter alone under LoRA; `model` instead; weights from
        `state_dict` when given) and the tokenizer into `path`."""
        (model or self.model).save_pretrained(
            path, **({} if state_dict is None else {"state_dict": state_dict}))
        self.tokenizer.save_pretrained(path)


def _eos_token_ids(model: PreTrainedModel, tokenizer) -> set[int]:
    ids = set()
    configured = (model.generation_config.eos_token_id if model.generation_config is not None
                  else None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(configured)
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    if not ids:
        raise ModelError("the tokenizer and generation config define no EOS token: set "
                         "tokenizer.eos_token")
    return ids


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """`auto` is fp32 on CPU and bf16 on GPUs that support it (else fp16 is not chosen silently:
    fp32)."""
    if name == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return getattr(torch, name)


def resolve_mixed_precision(name: str) -> str:
    """`auto` is bf16 autocast where the hardware computes bf16 natively (recent GPUs; CPUs with
    AVX512-BF16 or AMX, where it is about twice as fast as fp32 here), else no autocast."""
    if name != "auto":
        return name
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "no"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "no"
    return "bf16" if (" avx512_bf16" in flags or " amx_bf16" in flags) else "no"


def load_causal_lm(weights, device: torch.device) -> tuple[PreTrainedModel, object]:
    """Model and tokenizer from `weights` (a WeightsConfig: path, dtype); ModelError, one line, on
    failure."""
    path = resolve_model_path(weights.model_name_or_path)
    dtype = resolve_dtype(weights.dtype, device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    except model_load_errors() as exc:
        raise ModelError(f"cannot load model {weights.model_name_or_path!r}: "
                         f"{first_line(exc)}") from None
    tokenizer.padding_side = "left"
    return model, tokenizer


def load_tokenizer(model: torch.nn.Module):
    """The tokenizer saved beside a model object (its `name_or_path`); ModelError asking for it
    otherwise."""
    path = (getattr(getattr(model, "config", None), "name_or_path", "")
            or getattr(model, "name_or_path", ""))
    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, TypeError):
        raise ModelError(f"no tokenizer found beside the model object (name_or_path {path!r}): "
                         "pass tokenizer=") from None


def load_causal_lm_policy(weights, sampling, device: torch.device, *, lora=None,
                          max_prompt_length: int = 256,
                          gradient_checkpointing: bool = False,
                          policy_class: type[CausalLMPolicy] = CausalLMPolicy,
                          **policy_options) -> CausalLMPolicy:
    """Load model and tokenizer from `weights` (a WeightsConfig: path, dtype), add the LoRA adapter
    `lora` (a LoraConfig) or, without one, a frozen reference copy; sample as `sampling` (a
    SamplingConfig) says. `policy_class` (given `policy_options`) may be a subclass that samples
    differently."""
    model, tokenizer = load_causal_lm(weights, device)
    return wrap_causal_lm_policy(model, tokenizer, sampling, device, lora=lora,
                                 max_prompt_length=max_prompt_length,
                                 gradient_checkpointing=gradient_checkpointing,
                                 policy_class=policy_class,
                                 **policy_options)


def wrap_causal_lm_policy(model: torch.nn.Module, tokenizer, sampling, device: torch.device, *,
                          lora=None,
                          max_prompt_length: int = 256, gradient_checkpointing: bool = False,
                          policy_class: type[CausalLMPolicy] = CausalLMPolicy,
                          **policy_options) -> CausalLMPolicy:
    """A policy around a model and tokenizer already in memory (loaded by us or handed over by the
    user). A peft model keeps its own adapter (trained; pi_ref = the adapter disabled); otherwise
    the LoRA adapter `lora` (a LoraConfig) is added or, without one, a frozen copy is pi_ref.
    ModelError for a model that is not a causal LM or a tokenizer that cannot pad. `policy_class`
    (given `policy_options`) may be a subclass that samples differently (the vLLM backend).
    `gradient_checkpointing` recomputes the decoder layers in the update's backward instead of
    keeping their activations (policies/causal_lm/checkpointing.py)."""
    check_causal_lm_object(model, tokenizer)
    if getattr(tokenizer, "padding_side", "left") != "left" or tokenizer.pad_token_id is None:
        tokenizer = copy.deepcopy(tokenizer)  # the user's tokenizer object stays as they made it
        tokenizer.padding_side = "left"
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
    model.to(device)
    model.eval()  # dropout off during RL: log-probs must be those of the policy that samples
    reference_model = None
    if _is_peft_model(model):
        pass  # the user's adapter is what trains
    elif lora is not None:
        from peft import LoraConfig, get_peft_model

        targets = lora.lora_target_modules
        adapter = LoraConfig(
            r=lora.lora_r,
            lora_alpha=lora.lora_alpha,
            lora_dropout=lora.lora_dropout,
            target_modules=(targets if targets == "all-linear"
                            else [t.strip() for t in targets.split(",")]),
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, adapter)
        model.eval()
    else:
        reference_model = copy.deepcopy(model).requires_grad_(False).eval()
    if gradient_checkpointing:
        enable_gradient_checkpointing(model)  # after the copy: pi_ref runs without gradients anyway
    return policy_class(
        model,
        tokenizer,
        max_new_tokens=sampling.max_new_tokens,
        temperature=sampling.temperature,
        top_k=sampling.top_k,
        top_p=sampling.top_p,
        max_prompt_length=max_prompt_length,
        reference_model=reference_model,
        **policy_options,
    )


def _is_peft_model(model: torch.nn.Module) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def check_causal_lm_object(model, tokenizer) -> None:
    """ModelError, one line, unless `model` is a causal LM that generates (a peft model around one
    counts) and `tokenizer` is a tokenizer."""
    base = model.get_base_model() if _is_peft_model(model) else model
    if not isinstance(base, PreTrainedModel) or not base.can_generate():
        raise ModelError(f"model is a {type(base).__name__}, not a causal LM: pass an "
                         "AutoModelForCausalLM (or a PeftModel around one)")
    if tokenizer is None or not callable(getattr(tokenizer, "batch_decode", None)):
        raise ModelError(f"tokenizer is a {type(tokenizer).__name__}: pass the model's tokenizer "
                         "(AutoTokenizer.from_pretrained)")
