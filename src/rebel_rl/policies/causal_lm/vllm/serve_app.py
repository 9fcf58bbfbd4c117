"""`rebel vllm-serve`: a vLLM engine in a process of its own, for `generation_backend: vllm_server`.

A small FastAPI app around one `vllm.LLM` (its engine core in this process, as in the colocated
mode, so weights reach the model by reference): generation is vLLM's own; the app carries requests.

    GET  /health         {"status": "ok"}
    GET  /model_info     what it serves (`model_signature`), its dtype and max_model_len
    POST /generate       JSON {token_ids, seeds, n, temperature, top_k, top_p, max_tokens,
                         stop_token_ids} -> {"samples": [[completion ids, log-prob of each], ...]}
    POST /update_weights the body is a safetensors file of (checkpoint name -> tensor): loaded in
                         place with vLLM's `reload_weights`, prefix cache dropped

Why not vLLM's own routes: in vLLM 0.32 the RL weight-transfer routes (`/update_weights` and
`/init_weight_transfer_engine`, under VLLM_SERVER_DEV_MODE) move tensors over NCCL or CUDA IPC,
which a CPU does not have, and the dev `/collective_rpc` route passes only strings (so
`reload_weights` there reads a path: trainer and server would need a shared disk and a checkpoint
written per update). A safetensors body over HTTP needs neither; docs/vllm.md gives the sizes.
"""
# No `from __future__ import annotations` here: FastAPI reads the endpoints' annotations (Request, a
# name local to build_app) at run time to tell a raw request from a JSON body.
import hashlib
import json
import os
import threading

import torch

from ....errors import ModelError, first_line


def model_signature(config, tokenizer) -> dict:
    """What must agree between the trainer's model and a server's: architecture, sizes, and a
    fingerprint of the tokenizer (its vocabulary, EOS and BOS)."""
    vocab = json.dumps(sorted(tokenizer.get_vocab().items()))
    special = json.dumps([tokenizer.eos_token_id, tokenizer.bos_token_id])  # not pad: we may set it
    return {"architectures": list(getattr(config, "architectures", None) or []),
            "vocab_size": config.vocab_size, "hidden_size": config.hidden_size,
            "num_hidden_layers": config.num_hidden_layers,
            "tokenizer": hashlib.sha256((vocab + special).encode()).hexdigest()[:16]}


def build_app(engine, model: str, signature: dict, dtype: str, max_model_len: int):
    """The FastAPI app serving the `vllm.LLM` `engine` (which serves `model`); one request reaches
    the engine at a time (vllm.LLM is not thread-safe; the trainer sends one batch at a time)."""
    from fastapi import FastAPI, Request
    from fastapi.concurrency import run_in_threadpool
    from safetensors.torch import load

    from .sampler import engine_samples, push_weights

    app, lock = FastAPI(), threading.Lock()
    info = {"model": model, "dtype": dtype, "max_model_len": max_model_len, **signature}

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/model_info")
    def model_info() -> dict:
        return info

    @app.post("/generate")
    def generate(request: dict) -> dict:
        token_ids, seeds = request.pop("token_ids"), request.pop("seeds")
        with lock:
            return {"samples": engine_samples(engine, token_ids, seeds, **request)}

    @app.post("/update_weights")
    async def update_weights(request: Request) -> dict:
        weights = list(load(await request.body()).items())

        def push() -> None:
            with lock:
                push_weights(engine, weights)

        await run_in_threadpool(push)
        return {"tensors": len(weights)}

    return app


def serve(model: str, host: str = "127.0.0.1", port: int = 8000, dtype: str = "float32",
          kv_cache_gb: float = 2.0, gpu_memory_utilization: float = 0.9,
          max_model_len: int | None = None) -> None:
    """Start a vLLM engine for the model folder `model` and serve it at http://host:port until
    stopped (Ctrl-C). dtype: the engine's (match the trainer's: float32 on a CPU); kv_cache_gb on a
    CPU, gpu_memory_utilization on a GPU. ModelError (one line) when vLLM is missing or the engine
    does not start."""
    from .sampler import ENGINE_SETTINGS, INSTALL_HINT  # first: it sets vLLM's log level

    try:
        import uvicorn
        from vllm import LLM
    except ImportError:
        hint = INSTALL_HINT.replace("generation_backend vllm", "rebel vllm-serve")
        raise ModelError(hint) from None
    from transformers import AutoConfig, AutoTokenizer

    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # weights move by reference
    options = dict(model=model, dtype=dtype, max_model_len=max_model_len, **ENGINE_SETTINGS)
    if torch.cuda.is_available():
        options["gpu_memory_utilization"] = gpu_memory_utilization
    else:
        options["kv_cache_memory_bytes"] = int(kv_cache_gb * (1 << 30))
    try:
        signature = model_signature(AutoConfig.from_pretrained(model),
                                    AutoTokenizer.from_pretrained(model))
        engine = LLM(**options)
    except Exception as exc:  # vLLM and transformers raise many kinds when they cannot start
        raise ModelError(f"rebel vllm-serve did not start for {model}: {first_line(exc)}") from None
    length = engine.llm_engine.model_config.max_model_len
    app = build_app(engine, model, signature, dtype, length)
    print(f"vllm-serve: {model} at http://{host}:{port} (max_model_len {length}, {dtype})",
          flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
