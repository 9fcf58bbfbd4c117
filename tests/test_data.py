"""Prompt datasets: every source form, both prompt formats, and one-line errors for bad input."""
import json

import datasets
import pytest

from rebel_rl.data import is_conversational, load_prompt_dataset, prompt_to_text
from rebel_rl.errors import DataError, ModelError
from rebel_rl.data.builtin import BUILTIN_PROMPTS
from tiny import tiny_tokenizer

STANDARD = [{"prompt": "Tell me a joke.", "label": 1}, {"prompt": "Describe the sea.", "label": 0}]
CHAT = [
    {"prompt": [{"role": "user", "content": "Hi there"}], "label": 1},
    {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why?"}], "label": 0},
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("rows", [STANDARD, CHAT], ids=["standard", "conversational"])
def test_jsonl_keeps_prompts_and_extra_columns(tmp_path, rows):
    ds = load_prompt_dataset(str(write_jsonl(tmp_path / "p.jsonl", rows)))
    assert ds["prompt"] == [r["prompt"] for r in rows]
    assert ds["label"] == [1, 0]


@pytest.mark.parametrize("rows", [STANDARD, CHAT], ids=["standard", "conversational"])
def test_parquet_and_save_to_disk(tmp_path, rows):
    source = datasets.Dataset.from_list(rows)
    source.to_parquet(str(tmp_path / "p.parquet"))
    assert load_prompt_dataset(str(tmp_path / "p.parquet"))["prompt"] == source["prompt"]
    source.save_to_disk(str(tmp_path / "single"))
    assert load_prompt_dataset(str(tmp_path / "single"))["prompt"] == source["prompt"]


def test_save_to_disk_dataset_dict_picks_split(tmp_path):
    train = datasets.Dataset.from_list(STANDARD)
    test = datasets.Dataset.from_list([{"prompt": "Held out.", "label": 2}])
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(str(tmp_path / "dd"))
    assert load_prompt_dataset(str(tmp_path / "dd"), split="test")["prompt"] == ["Held out."]
    with pytest.raises(DataError, match=r"no split 'validation'.*train, test"):
        load_prompt_dataset(str(tmp_path / "dd"), split="validation")


def test_csv_with_renamed_prompt_column(tmp_path):
    (tmp_path / "p.csv").write_text("question,id\nWhat is up?,7\nHow are you?,8\n")
    ds = load_prompt_dataset(str(tmp_path / "p.csv"), prompt_column="question")
    assert ds.column_names == ["prompt", "id"]
    assert ds["prompt"] == ["What is up?", "How are you?"]


def test_file_is_one_split_whatever_is_asked(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", STANDARD)
    assert len(load_prompt_dataset(str(path), split="test")) == 2


def test_builtin_positive_sentiment_splits_are_disjoint():
    train = load_prompt_dataset("builtin:positive_sentiment", split="train")
    test = load_prompt_dataset("builtin:positive_sentiment", split="test")
    assert 200 <= len(train) <= 260 and 55 <= len(test) <= 75
    assert set(train["topic"]).isdisjoint(test["topic"])
    assert set(p[-1]["content"] for p in train["prompt"]).isdisjoint(p[-1]["content"] for p in test["prompt"])
    assert all(is_conversational(p) and [m["role"] for m in p] == ["system", "user"] for p in train["prompt"])
    assert len(set(p[-1]["content"] for p in train["prompt"])) == len(train)  # no duplicate prompts
    # The demo's 48 new tokens fit because every question asks for one short sentence.
    questions = [p[-1]["content"] for p in list(train["prompt"]) + list(test["prompt"])]
    assert all("one short sentence" in question for question in questions)
    assert questions[len(train)] == "Describe hospital waiting rooms in one short sentence."
    # Deterministic: a second load gives the same rows.
    assert load_prompt_dataset("builtin:positive_sentiment")["prompt"] == train["prompt"]


def test_unknown_builtin_lists_known_names():
    with pytest.raises(DataError, match="builtin:nope.*builtin:positive_sentiment"):
        load_prompt_dataset("builtin:nope")
    with pytest.raises(DataError, match="no split 'dev'"):
        load_prompt_dataset("builtin:positive_sentiment", split="dev")
    assert "positive_sentiment" in BUILTIN_PROMPTS


def test_missing_column_lists_columns_and_flag(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"text": "a", "id": 1}])
    with pytest.raises(DataError, match=r"no column 'prompt' \(columns: text, id\).*--prompt_column"):
        load_prompt_dataset(str(path))


def test_renaming_onto_existing_prompt_column_is_ambiguous(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"text": "a", "prompt": "b"}])
    with pytest.raises(DataError, match="ambiguous"):
        load_prompt_dataset(str(path), prompt_column="text")


def test_malformed_jsonl_names_file(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"prompt": "ok"}\n{"prompt": oops\n')
    with pytest.raises(DataError, match="bad.jsonl") as info:
        load_prompt_dataset(str(tmp_path / "bad.jsonl"))
    assert "\n" not in str(info.value)


def test_unreadable_parquet_names_file(tmp_path):
    (tmp_path / "bad.parquet").write_text("not parquet at all")
    with pytest.raises(DataError, match="bad.parquet"):
        load_prompt_dataset(str(tmp_path / "bad.parquet"))


@pytest.mark.parametrize(
    "bad_row",
    [
        {"prompt": "   "},
        {"prompt": []},
        {"prompt": [{"role": "user"}]},
        {"prompt": [{"role": "user", "content": 3}]},
        {"prompt": None},
    ],
    ids=["blank", "empty-list", "no-content", "content-not-str", "null"],
)
def test_bad_prompt_row_names_index(tmp_path, bad_row):
    chat = isinstance(bad_row["prompt"], list)
    first = {"prompt": [{"role": "user", "content": "fine"}]} if chat else {"prompt": "fine"}
    path = write_jsonl(tmp_path / "p.jsonl", [first, first, bad_row])
    with pytest.raises(DataError, match="row 2"):
        load_prompt_dataset(str(path))


def test_mixed_formats_rejected(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [STANDARD[0], CHAT[0]])
    with pytest.raises(DataError, match="row 1 is a conversational prompt"):
        load_prompt_dataset(str(path))


def test_empty_dataset_rejected(tmp_path, monkeypatch):
    (tmp_path / "empty.csv").write_text("prompt,label\n")
    with pytest.raises(DataError, match="no rows"):
        load_prompt_dataset(str(tmp_path / "empty.csv"))
    # A save_to_disk folder that holds zero rows (datasets cannot write one itself, so fake the load).
    (tmp_path / "folder").mkdir()
    monkeypatch.setattr(datasets, "load_from_disk", lambda path: datasets.Dataset.from_dict({"prompt": []}))
    with pytest.raises(DataError, match="has no rows"):
        load_prompt_dataset(str(tmp_path / "folder"))


@pytest.mark.parametrize("source", ["missing.jsonl", "./data/missing", "/no/such/dir/prompts"])
def test_missing_path_is_not_sent_to_hub(tmp_path, monkeypatch, source):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("hub was queried"))
    with pytest.raises(DataError, match="dataset file not found"):
        load_prompt_dataset(source)


def test_unsupported_file_type(tmp_path):
    (tmp_path / "p.txt").write_text("hello\n")
    with pytest.raises(DataError, match=r"unsupported dataset file type '\.txt'"):
        load_prompt_dataset(str(tmp_path / "p.txt"))


def test_hub_failure_becomes_one_line_data_error(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'org/name' on the Hub (LocalEntryNotFoundError)\nmore detail")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError) as info:
        load_prompt_dataset("org/name")
    message = str(info.value)
    assert "cannot load dataset 'org/name'" in message and "builtin:NAME" in message
    assert "\n" not in message


def test_prompt_to_text():
    tok = tiny_tokenizer()
    assert prompt_to_text("plain text", tok) == "plain text"
    text = prompt_to_text([{"role": "user", "content": "hi"}], tok)
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    tok.chat_template = None
    with pytest.raises(ModelError, match="no chat template"):
        prompt_to_text([{"role": "user", "content": "hi"}], tok)


def test_is_conversational():
    assert is_conversational([{"role": "user", "content": "x"}])
    assert not is_conversational("x")
    assert not is_conversational([])
    assert not is_conversational([{"content": "x"}])
