"""The causal-LM kind of policy, one room: `policy.py` (`CausalLMPolicy` and its loaders), its
`TextRollout` (`text.py`), and the helpers that keep it fast inside the contract:
`shared_prompts.py` (each prompt computed once however many samples share it), `chunked_head.py`
(log-probs without the full logits tensor), `lora_sampling.py` (the adapter folded for sampling),
`checkpointing.py` (gradient checkpointing in eval mode), `offline.py` (written completions as
rollout rows); `vllm/` samples it with a vLLM engine, colocated or served. Importing the package
loads none of them (policies/multiturn.py, which policy.py imports, reads `text.py`).
"""
