"""The release-asset policy: globs, profiles, repo and revision rules, each with its reason."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubmirror.core.policy import PathPattern, Policy, PolicySettings, TypeRules, Verdict
from hubmirror.core.types import RepoRef, RepoType

MODEL, DATASET = RepoType.MODEL, RepoType.DATASET
DEFAULT = Policy(PolicySettings())


@pytest.mark.parametrize(
    "path",
    [
        "runs/Jan01_12-00-00/events.out.tfevents.1700000000.host.1.0",
        "events.out.tfevents.123.host",
        "logs/train.log",
        "train.log",
        "sub/debug.log",
        "wandb/run-1/files/config.yaml",
        "mlruns/0/meta.yaml",
        "lightning_logs/version_0/hparams.yaml",
        "checkpoint-500/optimizer.pt",
        "checkpoint-500/model.safetensors",
        "output/checkpoint-1000/config.json",
        "global_step100/mp_rank_00_model_states.pt",
        "training_args.bin",
        "trainer_state.json",
        "optimizer.pt",
        "optimizer.bin",
        "scheduler.pt",
        "rng_state_0.pth",
        "rng_state.pth",
        "checkpoints/epoch=3.ckpt",
        "sub/checkpoints/last.ckpt",
    ],
)
def test_release_assets_excludes_training_artefacts(path: str) -> None:
    verdict = DEFAULT.file_verdict(MODEL, path)
    assert not verdict.allowed
    assert "release-assets" in verdict.rule


@pytest.mark.parametrize(
    "path",
    [
        "model.safetensors",
        "model-00001-of-00002.safetensors",
        "model.safetensors.index.json",
        "pytorch_model.bin",
        "tf_model.h5",
        "flax_model.msgpack",
        "model.onnx",
        "onnx/model.onnx",
        "model.gguf",
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "vocab.txt",
        "merges.txt",
        "spiece.model",
        "modeling_custom.py",
        "README.md",
        ".gitattributes",
        "sub/dir/nested.txt",
        "model.ckpt",
    ],
)
def test_release_assets_keeps_what_a_model_needs(path: str) -> None:
    assert DEFAULT.file_verdict(MODEL, path).allowed


@pytest.mark.parametrize(
    "path", ["data/train.csv", "logs/2023.jsonl", "runs/run1.parquet", "data/app.log"]
)
def test_datasets_keep_their_data(path: str) -> None:
    assert DEFAULT.file_verdict(DATASET, path).allowed


def test_everything_profile_mirrors_all() -> None:
    policy = Policy(PolicySettings(profile="everything"))
    assert policy.file_verdict(MODEL, "runs/events.out.tfevents.1").allowed
    assert policy.file_verdict(MODEL, "checkpoint-1/optimizer.pt").allowed


def test_profile_can_be_extended_and_overridden() -> None:
    policy = Policy(
        PolicySettings(
            exclude=("*.onnx",),
            keep=("trainer_state.json",),
            per_type=((MODEL, TypeRules(exclude=("extra/**",))),),
        )
    )
    assert policy.file_verdict(MODEL, "model.onnx").rule == "policy exclude: exclude '*.onnx'"
    assert not policy.file_verdict(MODEL, "extra/a.bin").allowed
    assert policy.file_verdict(DATASET, "extra/a.bin").allowed
    assert policy.file_verdict(MODEL, "trainer_state.json").allowed
    includes = Policy(PolicySettings(include=("*.json",)))
    assert includes.file_verdict(MODEL, "config.json").allowed
    assert not includes.file_verdict(MODEL, "model.bin").allowed


def test_max_file_size() -> None:
    policy = Policy(PolicySettings(max_file_size=100))
    assert policy.file_verdict(MODEL, "a.bin", 100).allowed
    assert policy.file_verdict(MODEL, "a.bin", 101).rule == "max_file_size 100 bytes"


def test_folders_vanish_when_all_their_files_are_excluded() -> None:
    for folder in ("runs", "runs/Jan01", "checkpoint-500", "out/checkpoint-9", "wandb"):
        assert DEFAULT.folder_hidden(MODEL, folder), folder
    for folder in ("sub", "onnx", "checkpoints", "data"):
        assert not DEFAULT.folder_hidden(MODEL, folder), folder


@pytest.mark.parametrize(
    ("settings", "repo", "allowed"),
    [
        (PolicySettings(), RepoRef(MODEL, "any/thing"), True),
        (PolicySettings(deny=("acme/*",)), RepoRef(MODEL, "acme/x"), False),
        (PolicySettings(deny=("acme/*",)), RepoRef(MODEL, "ACME/X"), False),
        (PolicySettings(deny=("*/llama-*",)), RepoRef(MODEL, "meta/llama-3"), False),
        (PolicySettings(deny=("acme/*",), allow=("acme/*",)), RepoRef(MODEL, "acme/x"), False),
        (PolicySettings(allowlist_only=True, allow=("acme/*",)), RepoRef(MODEL, "acme/x"), True),
        (PolicySettings(allowlist_only=True, allow=("acme/*",)), RepoRef(MODEL, "b/x"), False),
        (
            PolicySettings(per_type=((DATASET, TypeRules(deny=("*",))),)),
            RepoRef(DATASET, "a/b"),
            False,
        ),
        (
            PolicySettings(per_type=((DATASET, TypeRules(deny=("*",))),)),
            RepoRef(MODEL, "a/b"),
            True,
        ),
    ],
)
def test_repo_rules(settings: PolicySettings, repo: RepoRef, allowed: bool) -> None:
    assert Policy(settings).repo_verdict(repo).allowed is allowed


def test_pull_request_refs_are_denied_unless_enabled() -> None:
    assert not DEFAULT.revision_verdict("refs/pr/1").allowed
    assert DEFAULT.revision_verdict("refs/convert/parquet").allowed
    assert DEFAULT.revision_verdict("main").allowed
    assert Policy(PolicySettings(allow_pr_refs=True)).revision_verdict("refs/pr/1").allowed


def test_unknown_profile_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown policy profile"):
        Policy(PolicySettings(profile="nope"))


segment = st.text("abcxyz.-_", min_size=1, max_size=6).filter(lambda s: s not in (".", ".."))


@given(st.lists(segment, min_size=1, max_size=4), st.lists(segment, min_size=1, max_size=3))
def test_folder_hidden_implies_every_file_below_is_excluded(
    folder: list[str], below: list[str]
) -> None:
    patterns = [PathPattern(p) for p in ("runs/**", "**/checkpoint-*/**", "*.log", "a*/**")]
    path = "/".join(folder + below)
    for pattern in patterns:
        if pattern.matches_folder("/".join(folder)):
            assert pattern.matches(path)


# Each answer is Git's (`git check-ignore`); the old translation got every one wrong.
GIT_GLOBS = [
    ("[]a]x", ["]x", "ax"], ["bx"]),  # a leading `]` is a member (was an re.error)
    ("a\\*b", ["a*b"], ["axb", "a\\xb"]),  # `\` escapes
    ("a/foo**bar", ["a/fooXbar"], ["a/foo/x/bar"]),  # `**` inside a segment is `*`
    ("logs/", ["logs/x", "a/logs/x"], ["logs"]),  # a trailing `/`: folders only
    ("docs/*.md", ["docs/a.md", "docs/a.md/x"], ["x/docs/a.md"]),  # a folder's files
    ("a[/]b", [], ["a/b", "a_b"]),  # a class never matches `/`
]


@pytest.mark.parametrize(("pattern", "matched", "unmatched"), GIT_GLOBS)
def test_globs_match_what_git_ignores(
    pattern: str, matched: list[str], unmatched: list[str]
) -> None:
    compiled = PathPattern(pattern)
    assert [path for path in matched + unmatched if compiled.matches(path)] == matched


@pytest.mark.parametrize(("pattern", "matched", "unmatched"), GIT_GLOBS)
def test_the_expected_matches_are_gits_own(
    pattern: str, matched: list[str], unmatched: list[str], tmp_path: Path
) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text(pattern + "\n")
    answer = subprocess.run(
        ["git", "check-ignore", "--no-index", "--stdin", "-z"],
        cwd=tmp_path,
        input="\0".join(matched + unmatched) + "\0",
        capture_output=True,
        text=True,
        check=False,
    )
    assert answer.returncode in (0, 1), answer.stderr
    assert [path for path in answer.stdout.split("\0") if path] == matched


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("[\\]]x", "backslash"),  # Git: `]` (was an re.error)
        ("v[[:digit:]]", "POSIX"),  # Git: a digit (was a set of `[:digt`)
        ("[[]x", "\\[\\["),  # Git: `[` (was a FutureWarning from re)
        ("[a--z]", "doubled"),
    ],
)
def test_brackets_pathspec_reads_unlike_git_are_refused(pattern: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        Policy(PolicySettings(exclude=(pattern,)))


def test_a_class_with_a_trailing_bracket_or_negation_still_works() -> None:
    assert PathPattern("x[!]]").matches("xa")
    assert not PathPattern("x[!]]").matches("x]")
    assert PathPattern("x\\[y").matches("x[y")


@pytest.mark.parametrize(
    ("licenses", "allowed", "rule"),
    [
        (("mit",), True, "licence mit (licenses_allow 'mit')"),
        (("Apache-2.0",), True, "licence Apache-2.0 (licenses_allow 'apache-*')"),
        (("cc-by-nc-4.0",), False, "licence cc-by-nc-4.0 (licenses_deny 'cc-by-nc-*')"),
        (("mit", "cc-by-nc-sa-4.0"), False, "licence cc-by-nc-sa-4.0 (licenses_deny 'cc-by-nc-*')"),
        (("gpl-3.0",), False, "licence gpl-3.0 is not in licenses_allow"),
        ((), False, "licence none stated is not in licenses_allow"),
    ],
)
def test_licences_deny_first_then_must_be_allowed(
    licenses: tuple[str, ...], allowed: bool, rule: str
) -> None:
    policy = Policy(
        PolicySettings(licenses_allow=("mit", "apache-*"), licenses_deny=("cc-by-nc-*",))
    )
    assert policy.license_verdict(licenses) == Verdict(allowed, rule)
