"""The built-in fixture repositories of the fake Hub.

Each repo exercises one behaviour a mirror must get right: LFS vs regular files, tags
and PR refs, legacy ids without namespace, tree pagination, large files, datasets,
gated/private access and renames. Content is generated from fixed seeds so every run
serves the same bytes (and thus the same hashes); the tokenizer and config are real so
transformers can actually load `hm-test/tiny-model` through a mirror.

Building costs about a second (mostly 24 MiB of random bytes and their hashes), so the
immutable result is cached and each call hands out fresh copies of the mutable refs.
"""

from __future__ import annotations

import functools
import io
import json
import os
import pickle
import random
import zipfile

import pyarrow as pa
import pyarrow.parquet as pq
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from tests.fakehub.content import FakeCommit, FakeFile, FakeRepo, make_commit

MIB = 1024 * 1024

TINY_MODEL = "hm-test/tiny-model"
LEGACY_MODEL = "tiny-legacy"
MANY_FILES_MODEL = "hm-test/many-files"
TRAINED_MODEL = "hm-test/trained-model"
BIG_LFS_MODEL = "hm-test/big-lfs"
CSV_DATASET = "hm-test/tiny-csv"
PARQUET_DATASET = "hm-test/tiny-parquet"
GATED_MODEL = "hm-test/gated-model"
PRIVATE_MODEL = "hm-test/private-model"
RENAMED_MODEL = "hm-test/new-name"
OLD_MODEL_NAME = "hm-test/old-name"
TINY_SPACE = "hm-test/tiny-space"
PICKLED_MODEL = "hm-test/pickled-model"
NONCOMMERCIAL_MODEL = "hm-test/noncommercial-model"

MANY_FILES_COUNT = 1205
PAD_TOKEN_ID = 1
"""Id of [PAD]: the trainer numbers the special tokens first, in the order given."""

SENTENCES = [
    "the quick brown fox jumps over the lazy dog",
    "a mirror keeps a verified copy of every blob it serves",
    "hello world from the fake hub",
    "tokens are words and words are tokens",
    "the dog and the fox are friends",
]

GITATTRIBUTES = (
    "*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"
)


def random_bytes(seed: int, size: int) -> bytes:
    """Deterministic incompressible content (a mirror must not rely on compression)."""
    return random.Random(seed).randbytes(size)


def text_file(path: str, text: str) -> FakeFile:
    """A regular (non-LFS) UTF-8 file."""
    return FakeFile(path, text.encode())


def json_file(path: str, value: object) -> FakeFile:
    """A regular JSON file, pretty-printed like the files people push."""
    return FakeFile(path, (json.dumps(value, indent=2) + "\n").encode())


def build_tokenizer_json() -> tuple[str, int]:
    """Train a real WordLevel tokenizer so `tokenizer.json` loads in tokenizers/transformers."""
    tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=["[UNK]", "[PAD]"])
    tokenizer.train_from_iterator(SENTENCES, trainer=trainer)
    if tokenizer.token_to_id("[PAD]") != PAD_TOKEN_ID:
        raise RuntimeError("the tokenizer's [PAD] id no longer matches config.json")
    return tokenizer.to_str(), tokenizer.get_vocab_size()


def gpt2_config(vocab_size: int, **extra: object) -> dict[str, object]:
    """A minimal but valid GPT-2 config sized for the tiny tokenizer."""
    return {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "vocab_size": vocab_size,
        "n_positions": 64,
        "n_embd": 32,
        "n_layer": 2,
        "n_head": 2,
        # GPT-2's defaults (50256) lie outside the tiny vocabulary: use [PAD] instead.
        "bos_token_id": PAD_TOKEN_ID,
        "eos_token_id": PAD_TOKEN_ID,
        "pad_token_id": PAD_TOKEN_ID,
        **extra,
    }


def build_tiny_model() -> FakeRepo:
    """Two commits on main, tag v1.0 on the first, branch `dev` and PR #1 on top."""
    tokenizer_text, vocab_size = build_tokenizer_json()
    first_files = [
        text_file(".gitattributes", GITATTRIBUTES),
        text_file("README.md", "# tiny-model\n\nA tiny GPT-2 for mirror tests.\n"),
        json_file("config.json", gpt2_config(vocab_size)),
        text_file("tokenizer.json", tokenizer_text),
        json_file(
            "tokenizer_config.json",
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "unk_token": "[UNK]",
                "pad_token": "[PAD]",
                "model_max_length": 64,
            },
        ),
        json_file("special_tokens_map.json", {"unk_token": "[UNK]", "pad_token": "[PAD]"}),
        FakeFile("model.safetensors", random_bytes(1, 3 * MIB), lfs=True),
        text_file("sub/dir/nested.txt", "nested file in a sub directory\n"),
    ]
    first = make_commit("Initial commit", first_files)
    second = make_commit(
        "Update README and config",
        {
            **first.files,
            "README.md": text_file("README.md", "# tiny-model\n\nSecond revision of the card.\n"),
            "config.json": json_file("config.json", gpt2_config(vocab_size, use_cache=True)),
        },
        first,
    )
    dev = make_commit(
        "Work in progress on dev",
        {**second.files, "dev-only.txt": text_file("dev-only.txt", "only on the dev branch\n")},
        second,
    )
    pull_request = make_commit(
        "Proposed change (PR #1)",
        {
            **second.files,
            "README.md": text_file("README.md", "# tiny-model\n\nCard as proposed in PR #1.\n"),
            "pr-only.txt": text_file("pr-only.txt", "only in refs/pr/1\n"),
        },
        second,
    )
    return FakeRepo(
        repo_type="model",
        repo_id=TINY_MODEL,
        commits=[first, second, dev, pull_request],
        branches={"main": second.sha, "dev": dev.sha},
        tags={"v1.0": first.sha},
        pull_requests={1: pull_request.sha},
    )


def build_csv_dataset() -> FakeRepo:
    """A CSV dataset whose train split is stored in LFS and test split as a regular file."""
    labels = ["negative", "positive"]
    rng = random.Random(5)

    def rows(count: int, offset: int) -> str:
        lines = ["id,text,label"]
        for index in range(offset, offset + count):
            words = " ".join(rng.choice(SENTENCES).split()[:5])
            lines.append(f"{index},{words},{labels[index % 2]}")
        return "\n".join(lines) + "\n"

    return FakeRepo.single_commit(
        "dataset",
        CSV_DATASET,
        [
            text_file("README.md", "# tiny-csv\n\nA small CSV dataset (train/test).\n"),
            FakeFile("data/train.csv", rows(200, 0).encode(), lfs=True),
            text_file("data/test.csv", rows(50, 200)),
        ],
    )


def build_parquet_dataset() -> FakeRepo:
    """A real one-shard Parquet dataset, the layout the Hub's parquet converter produces."""
    table = pa.table(
        {
            "id": list(range(100)),
            "text": [SENTENCES[index % len(SENTENCES)] for index in range(100)],
            "label": [index % 2 for index in range(100)],
        }
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return FakeRepo.single_commit(
        "dataset",
        PARQUET_DATASET,
        [
            text_file("README.md", "# tiny-parquet\n\nA small Parquet dataset.\n"),
            FakeFile("data/train-00000-of-00001.parquet", buffer.getvalue(), lfs=True),
        ],
    )


def build_many_files_model() -> FakeRepo:
    """More than 1000 entries, so listing its tree needs the Link pagination."""
    files = [text_file("README.md", "# many-files\n")]
    files += [
        text_file(f"files/f{index:04d}.txt", f"file number {index}\n")
        for index in range(MANY_FILES_COUNT)
    ]
    return FakeRepo.single_commit("model", MANY_FILES_MODEL, files)


# What a trainer's output folder pushed as is looks like: release assets and the
# factory's process records side by side.
TRAINED_RELEASE_FILES = (
    ".gitattributes",
    "README.md",
    "config.json",
    "model.safetensors",
    "modeling_custom.py",
    "checkpoints.md",
)
TRAINED_ARTEFACTS = (
    "runs/Nov21_10-00-00_host/events.out.tfevents.1700000000.host.1.0",
    "logs/train.log",
    "wandb/run-1/files/output.log",
    "checkpoint-500/model.safetensors",
    "checkpoint-500/optimizer.pt",
    "checkpoint-500/trainer_state.json",
    "training_args.bin",
    "trainer_state.json",
)


def build_trained_model() -> FakeRepo:
    """A model repo whose training artefacts a release-asset mirror must hide."""
    lfs_suffixes = (".safetensors", ".pt", ".bin", ".0")
    files = [
        FakeFile(
            path,
            random_bytes(20 + index, 64 * 1024)
            if path.endswith(lfs_suffixes)
            else f"{path}\n".encode(),
            lfs=path.endswith(lfs_suffixes),
        )
        for index, path in enumerate(TRAINED_RELEASE_FILES + TRAINED_ARTEFACTS)
    ]
    return FakeRepo.single_commit("model", TRAINED_MODEL, files)


class _RunsACommand:
    """Pickled, it makes `pickle.load` call `os.system` (the classic malicious pickle).
    Only ever dumped here: nothing in the tests loads it."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo pwned",))


def _torch_style_zip(payload: bytes) -> bytes:
    """A PyTorch zip checkpoint layout holding `payload` as its `data.pkl`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", payload)
        archive.writestr("archive/version", "3\n")
    return buffer.getvalue()


def build_pickled_model() -> FakeRepo:
    """Pickle-based weights, dangerous and harmless, beside a safetensors file."""
    evil = pickle.dumps(_RunsACommand())
    return FakeRepo.single_commit(
        "model",
        PICKLED_MODEL,
        [
            FakeFile("pytorch_model.bin", _torch_style_zip(evil), lfs=True),
            FakeFile("evil.pkl", evil),
            FakeFile("notes.dat", evil),  # the same blob, under a name that is not scanned
            FakeFile("harmless.pkl", pickle.dumps({"weights": [1.0, 2.0, 3.0]})),
            FakeFile("model.safetensors", random_bytes(30, 64 * 1024), lfs=True),
            text_file("README.md", "# pickled-model\n"),
        ],
    )


def build_renamed_pair() -> list[FakeRepo]:
    """The repo under its new name, plus the stub standing for its old name."""
    new = FakeRepo.single_commit(
        "model",
        RENAMED_MODEL,
        [
            text_file("README.md", "# new-name\n\nThis repo used to be hm-test/old-name.\n"),
            json_file("config.json", {"model_type": "gpt2", "renamed": True}),
        ],
    )
    old = FakeRepo(repo_type="model", repo_id=OLD_MODEL_NAME, renamed_to=RENAMED_MODEL)
    return [new, old]


@functools.cache
def _default_repos() -> tuple[FakeRepo, ...]:
    """Build every fixture repo once per process; callers get copies."""
    repos = [
        build_tiny_model(),
        FakeRepo.single_commit(
            "model",
            LEGACY_MODEL,
            [
                json_file("config.json", {"model_type": "bert", "hidden_size": 32}),
                FakeFile("model.bin", random_bytes(2, MIB), lfs=True),
                text_file("README.md", "# tiny-legacy\n\nA model with a legacy id.\n"),
            ],
        ),
        build_many_files_model(),
        build_trained_model(),
        FakeRepo.single_commit(
            "model",
            BIG_LFS_MODEL,
            [
                FakeFile("big.bin", random_bytes(4, 24 * MIB), lfs=True),
                text_file("README.md", "# big-lfs\n\nOne 24 MiB LFS file.\n"),
            ],
        ),
        build_csv_dataset(),
        build_parquet_dataset(),
        FakeRepo.single_commit(
            "model",
            GATED_MODEL,
            [
                json_file("config.json", {"model_type": "gpt2", "gated": True}),
                FakeFile("weights.bin", random_bytes(7, 64 * 1024), lfs=True),
                text_file("README.md", "# gated-model\n"),
            ],
            gated="manual",
        ),
        FakeRepo.single_commit(
            "model",
            PRIVATE_MODEL,
            [json_file("config.json", {"model_type": "gpt2", "private": True})],
            private=True,
        ),
        *build_renamed_pair(),
        build_pickled_model(),
        FakeRepo.single_commit(
            "model",
            NONCOMMERCIAL_MODEL,
            [
                json_file("config.json", {"model_type": "gpt2"}),
                text_file("README.md", "---\nlicense: cc-by-nc-4.0\n---\n# noncommercial\n"),
            ],
        ),
        FakeRepo.single_commit(
            "space",
            TINY_SPACE,
            [
                text_file(
                    "app.py",
                    'import gradio as gr\n\ngr.Interface(lambda x: x, "text", "text").launch()\n',
                ),
                text_file("README.md", "---\ntitle: tiny-space\nsdk: gradio\n---\n"),
            ],
        ),
    ]
    for repo in repos:
        for commit in repo.commits:
            _warm_hashes(commit)
    return tuple(repos)


def _warm_hashes(commit: FakeCommit) -> None:
    """Compute the cached hashes once up front, not inside the first request."""
    for item in commit.files.values():
        _ = (item.git_oid, item.sha256, item.xet_hash)


def build_default_repos() -> list[FakeRepo]:
    """Fresh copies of the fixture repos (their refs can move independently)."""
    return [repo.copy() for repo in _default_repos()]
