"""Experiment trackers: one run reporting to TensorBoard, wandb (offline) and trackio (local) writes the same
metrics under the same names as metrics.jsonl, its config, and the sample completions as a table; each is
read back from what was written. A tracker whose package is missing is a one-line ConfigError."""
import glob
import importlib.util
import json
import struct

import pytest

from rebel_rl import ConfigError, RebelConfig
from rebel_rl.training.online.loop import RebelTrainer
from tiny import save_tiny_causal_lm, write_jsonl

pytest.importorskip("wandb")
pytest.importorskip("trackio")
PROMPTS = ["the movie was", "tell me about your weekend", "i feel", "write one sentence about the sea"]


def count_e(prompts, completions, **kwargs):
    return [float(c.count("e")) for c in completions]


def wandb_records(path: str) -> list:
    """The protobuf records of an offline .wandb file (a LevelDB-style log of 32 KiB blocks after a 7-byte
    header), as wandb itself reads it when syncing."""
    from wandb.proto import wandb_internal_pb2

    data, records, pos, chunk = open(path, "rb").read(), [], 7, b""
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        pos += 7
        if kind == 0 and length == 0:  # block padding
            pos += left - 7
            continue
        chunk, pos = chunk + data[pos:pos + length], pos + length
        if kind in (1, 4):  # a full record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunk)
            records.append(record)
            chunk = b""
    return records


def tensorboard_scalars(folder) -> dict:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: {e.step: e.value for e in events.Scalars(tag)} for tag in events.Tags()["scalars"]}


def test_tensorboard_wandb_and_trackio_get_the_same_metrics(tmp_path, monkeypatch):
    import trackio.sqlite_storage

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setattr(trackio.sqlite_storage, "TRACKIO_DIR", tmp_path / "trackio")
    model = str(save_tiny_causal_lm(tmp_path / "tiny"))
    data = write_jsonl(tmp_path / "train.jsonl", [{"prompt": p} for p in PROMPTS])
    run_dir = tmp_path / "run"
    config = RebelConfig(model_name_or_path=model, dataset=data, rewards=[], num_iterations=2, prompts_per_iteration=4,
                         minibatch_prompts=2, max_new_tokens=4, eval_prompts=0, lora_r=2, mixed_precision="no",
                         progress=False, save_every=0, report_to=["tensorboard", "wandb", "trackio"],
                         tracker_project="rebel-test", run_name="tiny", output_dir=str(run_dir))
    RebelTrainer(config, reward_funcs=[count_e]).train()
    jsonl = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    expected = {r["iteration"]: {k: v for k, v in r.items() if k != "iteration"} for r in jsonl}
    names = set(expected[1])
    assert {"reward", "kl", "loss", "rewards/count_e", "completions/mean_length"} <= names

    board = tensorboard_scalars(run_dir / "tensorboard")
    assert set(board) == names
    assert all(board[k][step] == pytest.approx(v) for step, row in expected.items() for k, v in row.items())

    records = wandb_records(glob.glob(str(run_dir / "wandb" / "offline-run-*" / "run-*.wandb"))[0])
    history = [{(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in r.history.item} for r in records
               if r.WhichOneof("record_type") == "history"]
    logged = {h["_step"]: h for h in history}
    for step, row in expected.items():
        assert all(logged[step][k] == pytest.approx(v) for k, v in row.items())
    assert any("completions" in h or "completions/_type" in h for h in history)  # the sample table
    configs = [r.config for r in records if r.WhichOneof("record_type") == "config"]
    config_keys = {item.key for c in configs for item in c.update}
    assert {"model", "reward", "training"} <= config_keys

    logs = trackio.sqlite_storage.SQLiteStorage.get_logs("rebel-test", "tiny")
    by_step = {}
    for entry in logs:
        by_step.setdefault(entry["step"], {}).update(entry)
    for step, row in expected.items():
        assert all(by_step[step][k] == pytest.approx(v) for k, v in row.items())
    assert by_step[1]["completions"]["_type"] == "trackio.table"
    assert "training" in json.dumps(trackio.sqlite_storage.SQLiteStorage.get_run_config("rebel-test", "tiny"))


def test_missing_tracker_package_is_one_line(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(ConfigError, match=r"report_to wandb needs the wandb package: pip install 'rebel-rl\[wandb\]'"):
        RebelConfig(report_to=["wandb"]).validate()
    with pytest.raises(ConfigError, match="report_to"):
        RebelConfig(report_to=["mlflow"]).validate()
