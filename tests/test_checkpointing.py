"""`gradient_checkpointing: true`: the same log-probs and gradients, each layer really recomputed in the
backward, dropout still off, and the models and policy kinds it cannot serve refused in one line."""
import pytest
import torch

from rebel_rl import RebelConfig
from rebel_rl.config import algorithm_spec
from rebel_rl.errors import ConfigError, ModelError
from rebel_rl.policies.causal_lm.checkpointing import enable_gradient_checkpointing
from rebel_rl.policies.factory import check_policy_source, load_policy
from tiny import tiny_tokenizer
from tiny_diffusion import save_tiny_denoiser

PROMPTS = [[{"role": "user", "content": "tell me about your weekend please"}],
           [{"role": "user", "content": "describe a good book you read and the sea"}]]


def _policy(path, **overrides):
    config = RebelConfig(model_name_or_path=str(path), max_new_tokens=10, temperature=0.7, lora_r=4, **overrides)
    return load_policy(config.model, config.sampling, torch.device("cpu"), config.max_prompt_length)


def _mlp_calls(model) -> list[int]:
    """A counter of MLP calls: each decoder layer's MLP runs inside the checkpointed region, so under
    checkpointing it runs again in the backward. (A pre-hook: torch stops a recomputation as soon as it has
    what the backward needs, which can be before the MLP returns.)"""
    calls = [0]
    for name, module in model.named_modules():
        if name.endswith(".mlp"):
            module.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.mark.parametrize("use_lora", [True, False])
def test_same_log_probs_and_gradients_with_every_layer_recomputed(any_tiny_path, use_lora):
    plain = _policy(any_tiny_path, use_lora=use_lora)
    checkpointed = _policy(any_tiny_path, use_lora=use_lora, gradient_checkpointing=True)
    with torch.no_grad():  # a random adapter (LoRA's B starts at 0), then the same weights in both
        for name, p in plain.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    checkpointed.model.load_state_dict(plain.model.state_dict())
    torch.manual_seed(0)
    rollout = plain.sample(PROMPTS, 3)
    results = []
    for policy in (plain, checkpointed):
        calls = _mlp_calls(policy.model)
        logps = policy.token_log_probs(rollout)
        weights = torch.linspace(-1, 1, logps.numel()).view_as(logps)  # weighs every token
        trainable = [p for p in policy.model.parameters() if p.requires_grad]
        grads = torch.autograd.grad((logps * weights).sum(), trainable)
        results.append((logps.detach(), grads, calls[0]))
    (plain_logps, plain_grads, plain_calls), (ckpt_logps, ckpt_grads, ckpt_calls) = results
    layers = plain.model.config.num_hidden_layers
    assert plain_calls == layers and ckpt_calls == 2 * layers  # recomputed in the backward, once per layer
    # Equal log-probs also mean dropout stayed off (GPT-2's 0.1 would move them).
    torch.testing.assert_close(ckpt_logps, plain_logps, rtol=0, atol=1e-6)
    assert len(ckpt_grads) == len(plain_grads) and all(g.abs().sum() > 0 for g in ckpt_grads)
    for a, b in zip(ckpt_grads, plain_grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert not checkpointed.model.training  # the model as a whole stays in eval mode
    with torch.no_grad():  # sampling and the no-gradient passes do not recompute anything
        calls = _mlp_calls(checkpointed.model)
        checkpointed.log_probs(rollout)
    assert calls[0] == layers


def test_a_model_whose_layers_apply_dropout_is_refused():
    """OPT's decoder layer calls dropout itself with the layer's own training flag: checkpointing it in an
    eval-mode model would switch dropout on, so it is refused with the fix."""
    from transformers import OPTConfig, OPTForCausalLM

    tokenizer = tiny_tokenizer()
    config = OPTConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=2, ffn_dim=32,
                       num_attention_heads=2, max_position_embeddings=64, word_embed_proj_dim=16, dropout=0.1)
    model = OPTForCausalLM(config).eval()
    with pytest.raises(ModelError, match="apply dropout themselves.*set the model's dropout to 0"):
        enable_gradient_checkpointing(model)
    config.dropout = 0.0  # the fix the message names
    enable_gradient_checkpointing(OPTForCausalLM(config).eval())


def test_a_diffusion_policy_is_refused_before_anything_loads(tmp_path):
    config = RebelConfig(model_name_or_path=str(save_tiny_denoiser(tmp_path / "unet")), gradient_checkpointing=True)
    with pytest.raises(ConfigError, match="gradient_checkpointing is for causal LMs, not a diffusion policy"):
        check_policy_source(config.model, algorithm_spec(config.algorithm))
