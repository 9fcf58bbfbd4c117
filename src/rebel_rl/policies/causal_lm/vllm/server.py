"""A causal LM sampled by vLLM servers (`generation_backend: vllm_server`, `rebel vllm-serve`).

The same policy as the colocated one (sampler.py: same sampling request, same rollout,
log pi_t recomputed by the trainer, `vllm/logprob_diff`), with the engine in another process, on
this machine or another: `vllm_server_url` names one server or several (comma-separated). Prompts
go round-robin to the servers (prompt i to server i mod k, each with its own seed, so the samples do
not depend on how many servers there are), all at once. After each update (`weights_updated`) and on
resume (`load_weights`), the next sample first pushes the trainer's weights (LoRA merged, as in the
colocated mode) to every server as one safetensors body over HTTP (serve_app.py says why).
`start_sample` sends a draw's requests from a background thread (async rollouts: the servers
sample while the trainer updates); a weight push waits for the draws in flight, so each is drawn
by the weights it started with, and vLLM's log-probs stand for those weights afterwards.

At start-up each server must answer and serve the same model: architecture, vocabulary size, sizes
and a tokenizer fingerprint (`model_signature`) must equal the trainer's. A server that answers
nothing, serves another model, or dies mid-run stops the run with one ConfigError line; checkpoints
already written are untouched, so `rebel train --resume RUN_DIR` continues once it is back. Only
the standard library talks HTTP: the trainer's environment does not need vLLM.
"""
from __future__ import annotations

import http.client
import json
import threading
import urllib.error
import urllib.request
from concurrent.futures import Future, ThreadPoolExecutor, wait

import torch

from ....errors import ConfigError
from ...base import SampleHandle
from .sampler import VllmRollout, VllmSampledCausalLM
from .serve_app import model_signature

HEALTH_TIMEOUT = 10.0  # seconds for /health and /model_info: a live server answers at once


def server_urls(value: str) -> list[str]:
    """The server addresses in `vllm_server_url` (comma-separated), without trailing slashes."""
    return [url.strip().rstrip("/") for url in value.split(",") if url.strip()]


def _request(url: str, path: str, body: bytes | dict | None, timeout: float,
             content_type: str = "application/json"):
    """One HTTP call to a server (GET without a body, else POST): its JSON answer, or one
    ConfigError line naming the server and how to bring it back."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    request = urllib.request.Request(url + path, data=data, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:  # it answered, with an error
        detail = exc.read().decode(errors="replace").strip().splitlines()
        raise ConfigError(f"the vLLM server {url} refused {path} (HTTP {exc.code}: "
                          f"{detail[0][:200] if detail else exc.reason})") from None
    except (OSError, ValueError, http.client.HTTPException) as exc:  # refused, cut, timed out
        reason = getattr(exc, "reason", None) or exc
        raise ConfigError(f"the vLLM server {url} does not answer {path} ({reason}): start it with "
                          "`rebel vllm-serve --model MODEL --port PORT` or fix vllm_server_url "
                          "(a run that had started continues with rebel train --resume RUN_DIR)"
                          ) from None


def check_servers(value: str) -> None:
    """Cheap check before anything is written: every server in `vllm_server_url` answers /health."""
    for url in server_urls(value):
        _request(url, "/health", None, HEALTH_TIMEOUT)


def in_background(call) -> Future:
    """`call()` in a daemon thread (a run that stops does not wait for a server's answer)."""
    future: Future = Future()
    future.set_running_or_notify_cancel()

    def run() -> None:
        try:
            future.set_result(call())
        except BaseException as exc:  # noqa: BLE001 (result() raises it in the caller's thread)
            future.set_exception(exc)

    threading.Thread(target=run, daemon=True, name="vllm-server-draw").start()
    return future


class ServerDraw(SampleHandle):
    """A draw the servers answer in a background thread; `result()` waits for it and builds the
    rollout in the caller's thread (tokenizer and tensors stay out of the thread)."""

    def __init__(self, policy: "VllmServerSampledCausalLM", request: dict, future: Future) -> None:
        self._policy, self._request, self._future = policy, request, future
        self._rollout: VllmRollout | None = None

    def done(self) -> bool:
        return self._future.done()

    def result(self) -> VllmRollout:
        if self._rollout is None:  # a dead server raises its one ConfigError line here
            self._rollout = self._policy.assemble(self._request, self._future.result())
        return self._rollout


class VllmServerSampledCausalLM(VllmSampledCausalLM):
    """A causal LM trained here, sampled by vLLM servers kept in sync with it over HTTP. Its draws
    can run in the background (`start_sample`): the servers are other processes, so they sample
    while this one trains (`training.async_rollouts: 1`, training/online/rollouts.py)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._drawing: list[Future] = []  # draws in flight: the servers' weights must stay
        self._stale = True  # a server may hold another run's weights: push before the first draw

    def start_sample(self, prompts: list, n: int) -> ServerDraw:
        """Send the draw's requests from a background thread and return at once; the weights
        the servers hold now (synced first when stale) draw it, even if the trainer's change."""
        request = self.sample_request(prompts, n)
        future = in_background(lambda: self.generate_ids(*request["generate"]))
        self._drawing.append(future)
        return ServerDraw(self, request, future)

    def _start_engine(self) -> list[str]:
        """The servers' addresses, once each answers and serves this model (else ConfigError)."""
        urls = server_urls(self.options.vllm_server_url)
        ours = model_signature(self.model.config, self.tokenizer)
        # As the colocated engine: a sequence needs at most the model's context.
        context = getattr(self.model.config, "max_position_embeddings", None) or 1 << 30
        needed = min(context, self.max_prompt_length + self.max_new_tokens)
        self.server_dtype = {}
        for url in urls:
            info = _request(url, "/model_info", None, HEALTH_TIMEOUT)
            for key, value in ours.items():
                if info.get(key) != value:
                    raise ConfigError(
                        f"the vLLM server {url} serves {info.get('model')} "
                        f"({key} {info.get(key)}), "
                        f"not this run's model {self.model_path} ({key} {value}): start it with "
                        f"`rebel vllm-serve --model {self.model_path}`")
            if info["max_model_len"] < needed:
                raise ConfigError(
                    f"the vLLM server {url} takes {info['max_model_len']} tokens per sequence; "
                    f"this run's sequences take up to {needed}: restart it with "
                    f"--max_model_len {needed} or lower those")
            self.server_dtype[url] = getattr(torch, info["dtype"], None)
        return urls

    def _each(self, call, arguments: list) -> list:
        """`call(url, argument)` for every server at once (threads: the time is spent waiting)."""
        if len(arguments) == 1:
            return [call(*arguments[0])]
        with ThreadPoolExecutor(len(arguments)) as pool:
            return list(pool.map(lambda pair: call(*pair), arguments))

    def sync_engine(self) -> None:
        """Push the trainer's current weights (LoRA merged) to every server: one safetensors body,
        in the server's dtype; each loads it in place and drops its prefix cache. Waits first for
        the draws in flight (`start_sample`)."""
        from safetensors.torch import save

        wait(self._drawing)  # a draw in flight finishes on the weights it started with
        self._drawing = []
        weights = dict(self._engine_weights())
        bodies = {}
        for dtype in set(self.server_dtype.values()):
            bodies[dtype] = save({name: tensor.to(dtype or tensor.dtype).contiguous().cpu()
                                  for name, tensor in weights.items()})
        timeout = self.options.vllm_server_timeout
        self._each(lambda url, body: _request(url, "/update_weights", body, timeout,
                                              "application/octet-stream"),
                   [(url, bodies[self.server_dtype[url]]) for url in self.engine])
        self._stale = False

    def generate_ids(self, token_ids: list[list[int]], n: int, temperature: float, seeds: list[int]
                     ) -> list[tuple[list[int], list[float]]]:
        """The colocated request, sent to the servers round-robin (prompt i to server i mod k); the
        answers are put back in prompt order."""
        servers, settings = len(self.engine), self.sampling_request(n, temperature)
        timeout = self.options.vllm_server_timeout

        def generate(url: str, share: int) -> list:
            body = {"token_ids": token_ids[share::servers], "seeds": seeds[share::servers],
                    **settings}
            samples = _request(url, "/generate", body, timeout)["samples"]
            return [samples[index * n:(index + 1) * n] for index in range(len(body["seeds"]))]

        shares = [(url, share) for share, url in enumerate(self.engine) if share < len(token_ids)]
        answers = self._each(generate, shares)
        return [tuple(sample) for prompt in range(len(token_ids))
                for sample in answers[prompt % servers][prompt // servers]]
