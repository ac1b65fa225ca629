"""datasets and transformers, unmodified, load through the mirror."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.clients import run_python
from tests.e2e.hubfiles import hub_file
from tests.e2e.mirror_process import MirrorProcess
from tests.fakehub import FakeHub

LOAD_CSV = """
import json
from datasets import load_dataset
dataset = load_dataset("hm-test/tiny-csv")
print(json.dumps({split: dataset[split].num_rows for split in dataset}))
print(json.dumps(dataset["train"][0]))
"""

STREAM_CSV = """
import json
from datasets import load_dataset
stream = load_dataset("hm-test/tiny-csv", split="train", streaming=True)
rows = list(stream)
print(json.dumps({"rows": len(rows), "first": rows[0]}))
"""

LOAD_PARQUET = """
import json
from datasets import load_dataset
train = load_dataset("hm-test/tiny-parquet", split="train")
print(json.dumps({"rows": train.num_rows, "columns": train.column_names}))
"""

STREAM_PARQUET = """
import json
from datasets import load_dataset
stream = load_dataset("hm-test/tiny-parquet", split="train", streaming=True)
print(json.dumps({"rows": sum(1 for _ in stream)}))
"""

LOAD_TOKENIZER = """
import json
from transformers import AutoConfig, AutoTokenizer
config = AutoConfig.from_pretrained("hm-test/tiny-model")
tokenizer = AutoTokenizer.from_pretrained("hm-test/tiny-model")
print(json.dumps({
    "model_type": config.model_type,
    "n_layer": config.n_layer,
    "vocab": tokenizer.vocab_size,
    "ids": tokenizer("hello world")["input_ids"],
}))
"""


def _csv_rows(data: bytes) -> int:
    return len(data.decode().strip().splitlines()) - 1


def test_load_dataset_csv(fake_hub: FakeHub, mirror: MirrorProcess, tmp_path: Path) -> None:
    output = run_python(LOAD_CSV, mirror.url, tmp_path).splitlines()
    counts = json.loads(output[0])
    train = hub_file(fake_hub, "hm-test/tiny-csv", "data/train.csv", repo_type="dataset")
    test = hub_file(fake_hub, "hm-test/tiny-csv", "data/test.csv", repo_type="dataset")
    assert counts == {"train": _csv_rows(train.data), "test": _csv_rows(test.data)}
    header, first = train.data.decode().splitlines()[:2]
    row = json.loads(output[1])
    assert list(row) == header.split(",")
    assert str(row["id"]) == first.split(",")[0]


def test_load_dataset_csv_streaming(
    fake_hub: FakeHub, mirror: MirrorProcess, tmp_path: Path
) -> None:
    result = json.loads(run_python(STREAM_CSV, mirror.url, tmp_path))
    train = hub_file(fake_hub, "hm-test/tiny-csv", "data/train.csv", repo_type="dataset")
    assert result["rows"] == _csv_rows(train.data)


def test_load_dataset_parquet_normal_and_streaming(mirror: MirrorProcess, tmp_path: Path) -> None:
    loaded = json.loads(run_python(LOAD_PARQUET, mirror.url, tmp_path / "a"))
    assert loaded["rows"] == 100
    streamed = json.loads(run_python(STREAM_PARQUET, mirror.url, tmp_path / "b"))
    assert streamed["rows"] == 100


def test_transformers_auto_config_and_tokenizer(
    fake_hub: FakeHub, mirror: MirrorProcess, tmp_path: Path
) -> None:
    result = json.loads(run_python(LOAD_TOKENIZER, mirror.url, tmp_path))
    config = json.loads(hub_file(fake_hub, "hm-test/tiny-model", "config.json").data)
    tokenizer = json.loads(hub_file(fake_hub, "hm-test/tiny-model", "tokenizer.json").data)
    assert result["model_type"] == "gpt2"
    assert result["n_layer"] == config["n_layer"]
    assert result["vocab"] == len(tokenizer["model"]["vocab"])
    assert result["ids"] == [tokenizer["model"]["vocab"][w] for w in ("hello", "world")]
