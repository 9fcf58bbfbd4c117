"""A hub id while the hub cannot be reached fails at once, in one line (causal LM and diffusion);
no network is detected once and switches the libraries to offline mode."""
from __future__ import annotations

import os

import pytest

from cli_run import files, in_tmp_dir, train_args  # noqa: F401 (fixtures)
from test_cli import assert_one_error_line, run_main


@pytest.mark.parametrize(
    "option, value, fragments",
    [
        (
            "--dataset",
            "someorg/no-such-dataset",
            ["cannot load dataset 'someorg/no-such-dataset'", "HF_HUB_OFFLINE"],
        ),
        (
            "--model_name_or_path",
            "someorg/no-such-model",
            ["cannot load model 'someorg/no-such-model'", "HF_HUB_OFFLINE"],
        ),
    ],
)
def test_hub_id_while_offline_fails_at_once_in_one_line(
    option, value, fragments, files, tmp_path, capfd, monkeypatch
):
    from rebel_rl import hub

    # no earlier probe's result: HF_HUB_OFFLINE is the reason
    monkeypatch.setattr(hub, "_probe", [])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache: the id cannot be there
    args = train_args(files, tmp_path / "run")
    args[args.index(option) + 1] = value
    code, _, err = run_main(capfd, *args)
    assert_one_error_line(code, err, *fragments, "local cache")
    assert "Retrying" not in err and not (tmp_path / "run").exists()


def test_diffusion_hub_id_while_offline_is_one_line(tmp_path, capfd, monkeypatch):
    from rebel_rl import hub

    monkeypatch.setattr(hub, "_probe", [])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    code, _, err = run_main(
        capfd,
        "train-images",
        "--model_name_or_path",
        "someorg/no-such-pipeline",
        "--model_type",
        "diffusion",
        "--output_dir",
        str(tmp_path / "run"),
    )
    assert_one_error_line(
        code, err, "cannot load model 'someorg/no-such-pipeline'", "HF_HUB_OFFLINE"
    )
    assert not (tmp_path / "run").exists()


def test_no_network_is_found_once_and_switches_the_libraries_offline(monkeypatch, tmp_path):
    from rebel_rl import hub

    calls = []

    def no_network(*args, **kwargs):
        calls.append(args)
        raise OSError("Name or service not known")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(hub, "_probe", [])
    monkeypatch.setattr(hub.socket, "create_connection", no_network)
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    import datasets.config

    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        # restored afterwards
        monkeypatch.setattr(datasets.config, name, getattr(datasets.config, name))
    from rebel_rl.errors import ModelError

    for _ in range(2):
        with pytest.raises(ModelError, match="no network"):
            hub.check_hub_id("someorg/model", "model", ModelError, "give a folder")
    assert len(calls) == 1  # probed once
    assert os.environ["HF_HUB_OFFLINE"] == "1" and huggingface_hub.constants.HF_HUB_OFFLINE is True
    (tmp_path / "hf" / "hub" / "models--someorg--model").mkdir(parents=True)
    # cached: the library loads it offline
    hub.check_hub_id("someorg/model", "model", ModelError, "give a folder")
