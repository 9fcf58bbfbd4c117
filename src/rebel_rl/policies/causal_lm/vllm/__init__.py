"""The causal LM sampled by vLLM: `sampler.py` (an engine in the training process), `server.py`
(`rebel vllm-serve` servers over HTTP) and `serve_app.py` (the server itself). Importing the package
loads none of them (vLLM is optional).
"""
