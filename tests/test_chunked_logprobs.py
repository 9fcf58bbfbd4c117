import pytest
import torch

from rebel_rl.algorithms.chunked_logprobs import chunked_token_log_probs


def _full(h, w, b, t, temp):
    logits = torch.nn.functional.linear(h, w, b) / temp
    return torch.log_softmax(logits, -1).gather(-1, t[..., None]).squeeze(-1)


@pytest.mark.parametrize("temp", [0.7, 1.0])
@pytest.mark.parametrize("chunk", [1, 3, 7, 100])
@pytest.mark.parametrize("with_bias", [False, True])
def test_values_and_grads_match_full(temp, chunk, with_bias):
    g = torch.Generator().manual_seed(0)
    h = torch.randn(2, 5, 4, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(11, 4, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(11, dtype=torch.float64, generator=g, requires_grad=True) if with_bias else None
    t = torch.randint(0, 11, (2, 5), generator=g)
    mask = torch.tensor([[1.0, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.float64)
    coef = torch.randn(2, 5, dtype=torch.float64, generator=g) * mask
    params = [h, w] + ([b] if with_bias else [])
    full = _full(h, w, b, t, temp)
    gf = torch.autograd.grad((full * coef).sum(), params)
    ch = chunked_token_log_probs(h, w, b, t, temp, chunk)
    gc = torch.autograd.grad((ch * coef).sum(), params)
    torch.testing.assert_close(ch, full, atol=1e-10, rtol=0)
    for a, e in zip(gc, gf):
        torch.testing.assert_close(a, e, atol=1e-10, rtol=0)


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_real_tiny_model_matches_full_logits(kind):
    import transformers as tf

    torch.manual_seed(0)
    if kind == "llama":
        cfg = tf.LlamaConfig(vocab_size=37, hidden_size=16, intermediate_size=32,
                             num_hidden_layers=1, num_attention_heads=2, tie_word_embeddings=True)
        model = tf.LlamaForCausalLM(cfg).double()
        base = model.model
    else:
        cfg = tf.GPT2Config(vocab_size=37, n_embd=16, n_layer=1, n_head=2, n_positions=32)
        model = tf.GPT2LMHeadModel(cfg).double()
        base = model.transformer
    model.eval()  # GPT-2 has dropout; both paths must see the same network
    ids = torch.randint(0, 37, (2, 9))
    full = torch.log_softmax(model(ids).logits[:, :-1] / 0.7, -1)
    full = full.gather(-1, ids[:, 1:, None]).squeeze(-1)
    gf = torch.autograd.grad(full.sum(), list(model.parameters()), allow_unused=True)
    head = model.get_output_embeddings()
    hid = base(ids).last_hidden_state[:, :-1]
    ch = chunked_token_log_probs(hid, head.weight, head.bias, ids[:, 1:], 0.7, 5)
    gc = torch.autograd.grad(ch.sum(), list(model.parameters()), allow_unused=True)
    torch.testing.assert_close(ch, full, atol=1e-10, rtol=0)
    for a, e in zip(gc, gf):
        if e is not None:
            torch.testing.assert_close(a, e, atol=1e-10, rtol=0)


def test_frozen_head_gets_no_gradient_and_hidden_grad_matches():
    """Under LoRA the head is frozen: backward returns None for it (nothing allocated) and the
    hidden-state gradient is still the full path's."""
    from types import SimpleNamespace

    from rebel_rl.algorithms.chunked_logprobs import _ChunkedLogProbs

    g = torch.Generator().manual_seed(1)
    h = torch.randn(2, 4, 3, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(9, 3, dtype=torch.float64, generator=g)
    b = torch.randn(9, dtype=torch.float64, generator=g)
    t = torch.randint(0, 9, (2, 4), generator=g)
    up = torch.randn(2, 4, dtype=torch.float64, generator=g)
    (expected,) = torch.autograd.grad((_full(h, w, b, t, 0.7) * up).sum(), [h])
    ctx = SimpleNamespace(saved_tensors=(h.detach(), w, b, t), temperature=0.7, chunk=3,
                          acc=torch.float64, autocast=("cpu", False, torch.bfloat16),
                          needs_input_grad=(True, False, False, False, False, False))
    gh, gw, gb, *_ = _ChunkedLogProbs.backward(ctx, up)
    assert gw is None and gb is None
    torch.testing.assert_close(gh, expected, atol=1e-10, rtol=0)
    ch = chunked_token_log_probs(h, w, b, t, 0.7, 3)
    (through_apply,) = torch.autograd.grad((ch * up).sum(), [h])
    torch.testing.assert_close(through_apply, expected, atol=1e-10, rtol=0)
