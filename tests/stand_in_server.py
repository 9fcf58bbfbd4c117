"""A stand-in for `rebel vllm-serve` (stdlib http.server, nothing of vLLM's), for the trainer's side
of `generation_backend: vllm_server` without vLLM: it answers /health and /model_info with the
given info, and optionally /generate (token ids drawn from each prompt's seed, after `delay`
seconds) and /update_weights, recording when each call started and ended."""
from __future__ import annotations

import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOGPROB = -1.5  # the log-prob the stand-in reports for every token it samples


class StandIn:
    """The server, its URL and its calls: `calls` holds (path, start, end) perf_counter times."""

    def __init__(self, info: dict, delay: float = 0.0, vocab_size: int = 0) -> None:
        self.info, self.delay, self.vocab_size = info, delay, vocab_size
        self.calls: list[tuple[str, float, float]] = []
        self.dead = False  # True: /generate drops the connection, as a killed server would
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def intervals(self, path: str) -> list[tuple[float, float]]:
        return [(start, end) for name, start, end in self.calls if name == path]

    def shutdown(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def samples(self, request: dict) -> list:
        """n (token ids, log-probs) per prompt, from its seed alone (not from any weights)."""
        out = []
        for seed in request["seeds"]:
            draw = random.Random(seed)
            for _ in range(request["n"]):
                ids = []
                while len(ids) < request["max_tokens"]:
                    ids.append(draw.randrange(3, self.vocab_size))
                    if ids[-1] in request["stop_token_ids"]:
                        break
                out.append([ids, [LOGPROB] * len(ids)])
        return out

    def _handler(self):
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self._answer({"status": "ok"} if self.path == "/health" else stand_in.info)

            def do_POST(self):
                start = time.perf_counter()
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path == "/generate":
                    if stand_in.dead:
                        self.connection.close()
                        return
                    time.sleep(stand_in.delay)
                    answer = {"samples": stand_in.samples(json.loads(body))}
                else:  # /update_weights: the body is not looked at
                    answer = {"tensors": 0}
                stand_in.calls.append((self.path, start, time.perf_counter()))
                self._answer(answer)

            def _answer(self, answer: dict) -> None:
                body = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        return Handler


def stand_in_for(model: str, delay: float = 0.0) -> StandIn:
    """A stand-in serving the tiny model folder `model` (its signature, so the trainer takes it)."""
    from transformers import AutoConfig, AutoTokenizer

    from rebel_rl.policies.causal_lm.vllm.serve_app import model_signature

    config = AutoConfig.from_pretrained(model)
    info = {"model": model, "dtype": "float32", "max_model_len": 512,
            **model_signature(config, AutoTokenizer.from_pretrained(model))}
    return StandIn(info, delay, config.vocab_size)
