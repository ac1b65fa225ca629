"""The release-asset policy: which repos, revisions and files exist for the mirror's clients.

Pure: settings in, verdicts out, each verdict naming the rule that decided it.

File globs follow .gitignore: a pattern without `/` matches any path segment at any
depth (`*.log`, `events.out.tfevents.*`); a pattern with `/` is anchored at the repo root
(`runs/**`); `**` spans any number of segments (`**/checkpoint-*/**`). A file is mirrored
when it matches an include pattern and no exclude pattern, unless a `keep` pattern puts
it back. Repo globs (`acme/*`, `*/llama-*`) match repo ids, case-insensitively; deny wins
over allow; in allowlist mode only listed repos exist.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field

from hubmirror.core.types import RepoRef, RepoType

# Training artefacts, not release assets. Models and spaces: everything a trainer leaves.
_TRAINING_ARTEFACTS = (
    "events.out.tfevents.*",
    "runs/**",
    "logs/**",
    "*.log",
    "wandb/**",
    "mlruns/**",
    "lightning_logs/**",
    "**/checkpoint-*/**",
    "**/global_step*/**",
    "training_args.bin",
    "trainer_state.json",
    "optimizer.pt",
    "optimizer.bin",
    "scheduler.pt",
    "rng_state*.pth",
    "**/checkpoints/**/*.ckpt",
)
# Datasets keep their data, which may well live in logs/, runs/ or *.log files.
_DATASET_KEEPS = frozenset({"runs/**", "logs/**", "*.log", "**/checkpoints/**/*.ckpt"})
_DATASET_TRAINING_ARTEFACTS = tuple(p for p in _TRAINING_ARTEFACTS if p not in _DATASET_KEEPS)
PROFILES: dict[str, dict[RepoType, tuple[str, ...]]] = {
    "release-assets": {
        RepoType.MODEL: _TRAINING_ARTEFACTS,
        RepoType.SPACE: _TRAINING_ARTEFACTS,
        RepoType.KERNEL: _TRAINING_ARTEFACTS,
        RepoType.DATASET: _DATASET_TRAINING_ARTEFACTS,
    },
    "everything": {repo_type: () for repo_type in RepoType},
}
DEFAULT_PROFILE = "release-assets"


@dataclass(frozen=True, slots=True)
class TypeRules:
    """Rules for one repo type, added to the top-level ones."""

    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    keep: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PolicySettings:
    """The `[policy]` section of the configuration."""

    profile: str = DEFAULT_PROFILE
    allowlist_only: bool = False
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    keep: tuple[str, ...] = ()
    allow_pr_refs: bool = False
    max_file_size: int | None = None
    per_type: tuple[tuple[RepoType, TypeRules], ...] = field(default=())

    def rules_for(self, repo_type: RepoType) -> TypeRules:
        """The per-type section for `repo_type` (empty when not configured)."""
        return dict(self.per_type).get(repo_type, TypeRules())


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether something is mirrored, and the rule that said so."""

    allowed: bool
    rule: str


class PathPattern:
    """One .gitignore-style glob, compiled."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        body = pattern.strip().lstrip("/").rstrip("/") if "/" in pattern else pattern.strip()
        self._segment_only = "/" not in pattern.strip().rstrip("/")
        self._regex = re.compile(_glob_to_regex(body))
        self.covers_folders = body.endswith("/**")
        self._folder_regex = re.compile(_glob_to_regex(body[:-3])) if self.covers_folders else None

    def matches(self, path: str) -> bool:
        """True when the file at `path` is matched."""
        if self._segment_only:
            return any(self._regex.fullmatch(segment) for segment in path.split("/"))
        return self._regex.fullmatch(path) is not None

    def matches_folder(self, folder: str) -> bool:
        """True when every file below `folder` is matched (the folder itself vanishes)."""
        if self._segment_only:
            return any(self._regex.fullmatch(segment) for segment in folder.split("/"))
        if self._folder_regex is None:
            return False
        parts = folder.split("/")
        return any(
            self._folder_regex.fullmatch("/".join(parts[:length]))
            for length in range(1, len(parts) + 1)
        )


def _glob_to_regex(glob: str) -> str:
    """Translate a glob with `**` into a regex over `/`-separated paths."""
    out = []
    index = 0
    while index < len(glob):
        if glob.startswith("**/", index):
            out.append("(?:.*/)?")
            index += 3
        elif glob.startswith("/**", index) and index + 3 == len(glob):
            out.append("/.*")
            index += 3
        elif glob.startswith("**", index):
            out.append(".*")
            index += 2
        elif glob[index] == "*":
            out.append("[^/]*")
            index += 1
        elif glob[index] == "?":
            out.append("[^/]")
            index += 1
        elif glob[index] == "[" and "]" in glob[index + 1 :]:
            end = glob.index("]", index + 1)
            out.append(glob[index : end + 1].replace("[!", "[^"))
            index = end + 1
        else:
            out.append(re.escape(glob[index]))
            index += 1
    return "".join(out)


def _repo_matches(patterns: tuple[str, ...], repo_id: str) -> str | None:
    lowered = repo_id.lower()
    for pattern in patterns:
        if fnmatch.fnmatchcase(lowered, pattern.lower()):
            return pattern
    return None


@dataclass(frozen=True, slots=True)
class _CompiledFileRules:
    include: tuple[PathPattern, ...]
    exclude: tuple[tuple[PathPattern, str], ...]  # pattern, where it came from
    keep: tuple[PathPattern, ...]


class Policy:
    """Compiled policy settings; every method is a pure function of its arguments."""

    def __init__(self, settings: PolicySettings) -> None:
        if settings.profile not in PROFILES:
            raise ValueError(
                f"unknown policy profile {settings.profile!r}; known: {sorted(PROFILES)}"
            )
        self.settings = settings
        # Compiled now, not on the first request (64 patterns take milliseconds).
        self._file_rules = self._compile_file_rules()

    def _compile_file_rules(self) -> dict[RepoType, _CompiledFileRules]:
        compiled = {}
        for repo_type in RepoType:
            typed = self.settings.rules_for(repo_type)
            includes = self.settings.include + typed.include or ("**",)
            excludes = [
                (PathPattern(pattern), f"profile {self.settings.profile}")
                for pattern in PROFILES[self.settings.profile][repo_type]
            ] + [
                (PathPattern(pattern), "policy exclude")
                for pattern in self.settings.exclude + typed.exclude
            ]
            compiled[repo_type] = _CompiledFileRules(
                tuple(PathPattern(pattern) for pattern in includes),
                tuple(excludes),
                tuple(PathPattern(pattern) for pattern in self.settings.keep + typed.keep),
            )
        return compiled

    def repo_verdict(self, repo: RepoRef) -> Verdict:
        """Whether the repo exists for the mirror's clients."""
        typed = self.settings.rules_for(repo.repo_type)
        denied_by = _repo_matches(self.settings.deny + typed.deny, repo.repo_id)
        if denied_by is not None:
            return Verdict(False, f"repo deny rule {denied_by!r}")
        allowed_by = _repo_matches(self.settings.allow + typed.allow, repo.repo_id)
        if self.settings.allowlist_only and allowed_by is None:
            return Verdict(False, "allowlist-only mode: repo not in the allow list")
        return Verdict(True, f"repo allow rule {allowed_by!r}" if allowed_by else "default")

    def revision_verdict(self, revision: str) -> Verdict:
        """Whether a revision may be mirrored (pull-request refs only when enabled)."""
        if revision.startswith("refs/pr/") and not self.settings.allow_pr_refs:
            return Verdict(False, "pull-request refs (refs/pr/*) are not mirrored")
        return Verdict(True, "default")

    def file_verdict(self, repo_type: RepoType, path: str, size: int | None = None) -> Verdict:
        """Whether a file is mirrored, naming the deciding rule."""
        rules = self._file_rules[repo_type]
        limit = self.settings.max_file_size
        if limit is not None and size is not None and size > limit:
            return Verdict(False, f"max_file_size {limit} bytes")
        kept = next((p.pattern for p in rules.keep if p.matches(path)), None)
        if kept is not None:
            return Verdict(True, f"keep {kept!r}")
        if not any(pattern.matches(path) for pattern in rules.include):
            return Verdict(False, "not matched by any include pattern")
        for pattern, origin in rules.exclude:
            if pattern.matches(path):
                return Verdict(False, f"{origin}: exclude {pattern.pattern!r}")
        return Verdict(True, "default")

    def folder_hidden(self, repo_type: RepoType, folder: str) -> bool:
        """True when an exclude rule hides everything below `folder` (and nothing is kept)."""
        rules = self._file_rules[repo_type]
        if rules.keep:
            return False
        return any(pattern.matches_folder(folder) for pattern, _ in rules.exclude)
