"""Built-in models are the tasks' registrations: policies/ knows no task's model by name, and a
folder is a saved copy of a built-in model only when its task says so."""
from __future__ import annotations

import json
from types import SimpleNamespace

import rebel_rl  # noqa: F401 (the tasks register their models on import)
from rebel_rl.models.builtin import BUILTIN_MODELS, builtin_names, builtin_of_folder
from rebel_rl.policies.diffusion.kind import looks_like_diffusion


def test_the_digits_task_registers_the_only_builtin_diffusion_model():
    assert builtin_names("diffusion") == ["builtin:digits-denoiser"]
    assert "builtin:digits-denoiser" not in builtin_names("causal_lm")
    assert looks_like_diffusion(SimpleNamespace(model_name_or_path="builtin:digits-denoiser"))


def test_a_saved_unet_is_the_digits_denoiser_by_the_tasks_test(tmp_path):
    unet, other = tmp_path / "unet", tmp_path / "other"
    unet.mkdir()
    other.mkdir()
    (unet / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel"}))
    (other / "config.json").write_text(json.dumps({"_class_name": "LlamaForCausalLM"}))
    assert builtin_of_folder(unet, "diffusion") is BUILTIN_MODELS["digits-denoiser"]
    assert builtin_of_folder(other, "diffusion") is None
    assert builtin_of_folder(unet, "causal_lm") is None
    assert looks_like_diffusion(SimpleNamespace(model_name_or_path=str(unet)))
    assert not looks_like_diffusion(SimpleNamespace(model_name_or_path=str(other)))
