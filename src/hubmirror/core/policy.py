"""The release-asset policy: which repos, revisions and files exist for the mirror's clients.

Pure: settings in, verdicts out, each verdict naming the rule that decided it.

File globs are .gitignore patterns, matched by pathspec with Git's rules: a pattern
without `/` matches any path segment at any depth (`*.log`, `events.out.tfevents.*`); a
pattern with `/` is anchored at the repo root (`runs/**`); `**` spans any number of
segments (`**/checkpoint-*/**`); a trailing `/` matches folders only; a pattern that
matches a folder matches every file below it; a `[...]` that pathspec would read unlike
Git is refused (ValueError). A file is mirrored when it matches an include pattern and
no exclude pattern, unless a `keep` pattern puts it back. Repo globs (`acme/*`,
`*/llama-*`) match repo ids, case-insensitively; deny wins over allow; in allowlist mode
only listed repos exist.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

from pathspec.patterns.gitignore.spec import GitIgnoreSpecPattern

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
    # Pickle-based files the scanner calls dangerous: "block" (403), "warn" (served with
    # a warning header), or "off" (not scanned).
    scan: str = "block"
    # Licence globs (`cc-by-nc-*`) matched against the card's `license`: deny wins;
    # with an allow list, a repo whose licence no glob allows (or that states none) is
    # refused.
    licenses_allow: tuple[str, ...] = ()
    licenses_deny: tuple[str, ...] = ()
    per_type: tuple[tuple[RepoType, TypeRules], ...] = field(default=())

    def rules_for(self, repo_type: RepoType) -> TypeRules:
        """The per-type section for `repo_type` (empty when not configured)."""
        return dict(self.per_type).get(repo_type, TypeRules())


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether something is mirrored, and the rule that said so."""

    allowed: bool
    rule: str
    # Refused only because allowlist mode does not list the repo: an approval may let
    # it in (`services.approvals`).
    approvable: bool = False


class PathPattern:
    """One .gitignore glob, compiled by pathspec with Git's own rules."""

    def __init__(self, pattern: str) -> None:
        problem = _bracket_problem(pattern)
        if problem is not None:
            raise ValueError(f"policy glob {pattern!r}: {problem}")
        self.pattern = pattern
        compiled = GitIgnoreSpecPattern(pattern)
        # Blank lines, comments and negations (`!x`) match nothing on their own: a file
        # is put back with a `keep` pattern instead.
        self._regex = compiled.regex if compiled.include else None

    def matches(self, path: str) -> bool:
        """True when the file at `path` is matched."""
        return self._regex is not None and self._regex.search(path) is not None

    def matches_folder(self, folder: str) -> bool:
        """True when every file below `folder` is matched (the folder itself vanishes)."""
        # As in Git, a pattern that matches a directory (a path ending in `/`) matches
        # everything inside it.
        return self.matches(folder + "/")


def _bracket_problem(pattern: str) -> str | None:
    """Why pathspec would read a `[...]` of `pattern` other than Git does, if it would.

    pathspec hands the inside of a bracket expression to `re` almost as it is: a
    backslash stays a literal character (Git reads an escape), POSIX classes are not
    known, and `re` may one day read `[[` and doubled `-&~|` as set operations.
    """
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            index += 2
            continue
        index += 1
        if char != "[":
            continue
        first = index + (pattern[index : index + 1] in ("!", "^"))
        end = pattern.find("]", first + (pattern[first : first + 1] == "]"))
        if end < 0:
            return None  # an unclosed `[`: Git and pathspec match nothing with it
        body = pattern[first:end]
        if "\\" in body:
            return "a backslash inside [...] is not supported; write []] for ], [a-] for -"
        if "[:" in body:
            return "POSIX classes like [[:digit:]] are not supported; write [0-9]"
        if body.startswith("[") or any(twice in body for twice in ("--", "&&", "~~", "||")):
            return "[[ and doubled -&~| inside [...] are not supported; write \\[ for ["
        index = end + 1
    return None


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
            return Verdict(
                False, "allowlist-only mode: repo not in the allow list", approvable=True
            )
        return Verdict(True, f"repo allow rule {allowed_by!r}" if allowed_by else "default")

    @property
    def has_license_rules(self) -> bool:
        """Whether repos are judged by their licence at all."""
        return bool(self.settings.licenses_allow or self.settings.licenses_deny)

    def license_verdict(self, licenses: tuple[str, ...]) -> Verdict:
        """Whether a repo whose card states `licenses` is mirrored."""
        for license_id in licenses:
            denied_by = _repo_matches(self.settings.licenses_deny, license_id)
            if denied_by is not None:
                return Verdict(False, f"licence {license_id} (licenses_deny {denied_by!r})")
        if not self.settings.licenses_allow:
            return Verdict(True, "default")
        for license_id in licenses:
            allowed_by = _repo_matches(self.settings.licenses_allow, license_id)
            if allowed_by is not None:
                return Verdict(True, f"licence {license_id} (licenses_allow {allowed_by!r})")
        stated = ", ".join(licenses) or "none stated"
        return Verdict(False, f"licence {stated} is not in licenses_allow")

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
