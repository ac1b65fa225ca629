"""One typed Settings object: defaults < TOML file < `HUBMIRROR_*` env vars < flags.

Read once at the entry point and passed down through constructors; nothing reads the
environment at import time.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hubmirror.core.access import AccessSettings, OfflineGrant
from hubmirror.core.errors import ConfigError
from hubmirror.core.policy import DEFAULT_PROFILE, PolicySettings, TypeRules
from hubmirror.core.types import RepoType

ENV_PREFIX = "HUBMIRROR_"
_DURATION = re.compile(r"(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|m|h|d|w)?")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclasses.dataclass(frozen=True, slots=True)
class UpstreamConfig:
    """One upstream: its URL, an optional token of the mirror's own (sent with file
    downloads of callers who bring none, against public-repo rate limits) and its weight
    (share of file downloads; 0 = used only when the ones before it fail)."""

    url: str
    token: str | None = dataclasses.field(default=None, repr=False)
    weight: float | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """Everything the mirror can be configured with."""

    host: str = "127.0.0.1"
    port: int = 8090
    cache_dir: Path = Path("hubmirror-data")
    # Where the index lives: "" (the cache folder's SQLite file) or a PostgreSQL URL,
    # whose password must never be printed (hence no repr).
    index: str = dataclasses.field(default="", repr=False)
    # Where verified blobs live: "" (the cache folder), file://DIR or s3://BUCKET[/PREFIX].
    storage: str = ""
    # The object store's URL (AWS's when empty); may carry user information: no repr.
    s3_endpoint: str = dataclasses.field(default="", repr=False)
    # Bytes of an object store's blobs kept on this node's disk for sendfile (0: none).
    local_cache_size: int = 0
    # Cluster mode: the URL the other nodes reach this one at ("" for a single node)
    # and the secret that signs node-to-node requests (never printed).
    node_url: str = ""
    # Server processes sharing the port, the cache and the index (`cli.workers`).
    workers: int = 1
    # A reverse proxy in front sets X-Forwarded-Proto/Host/For: take them as the client's.
    trust_forwarded: bool = False
    cluster_secret: str = dataclasses.field(default="", repr=False)
    upstream: str = "https://huggingface.co"
    offline: bool = False
    revision_ttl: float = 300.0
    log_level: str = "info"
    log_format: str = "text"
    upstream_connections: int = 8
    upstream_retries: int = 5
    upstream_timeout: float = 5.0
    answer_timeout: float = 8.0
    upstream_concurrency: int = 64
    upstream_rate: float = 100.0
    negative_ttl: float = 60.0
    upstream_probe_interval: float = 2.0
    ready_requires_upstream: bool = False
    max_stale: float = 0.0
    shutdown_grace: float = 30.0
    idle_timeout: float = 75.0
    segment_threshold: int = 32 * 1024 * 1024
    segment_size: int = 8 * 1024 * 1024
    auth_ttl: float = 600.0
    max_size: int = 0
    disk_reserve: int = 1024**3
    max_age: float = 0.0
    sync_list: str = ""
    sync_every: float = 6 * 3600.0
    access_log: bool = False
    require_token: bool = False
    metrics_token: str = ""
    policy_profile: str = DEFAULT_PROFILE
    # Whom a refused client of an allowlist mirror is told to ask for an approval.
    approval_contact: str = ""
    # Where governance events (requests, decisions, blocked files) are POSTed as JSON.
    notify_url: str = ""
    policy: PolicySettings = dataclasses.field(default_factory=PolicySettings)
    access: AccessSettings = dataclasses.field(default_factory=AccessSettings)
    upstreams: tuple[UpstreamConfig, ...] = ()

    def upstream_list(self) -> tuple[UpstreamConfig, ...]:
        """The upstreams in priority order, weights settled: unless weights were given,
        the first takes every file download and the others stand by."""
        configured = self.upstreams or (UpstreamConfig(self.upstream),)
        return tuple(
            dataclasses.replace(
                upstream,
                weight=upstream.weight
                if upstream.weight is not None
                else (1.0 if position == 0 else 0.0),
            )
            for position, upstream in enumerate(configured)
        )

    def effective_policy(self) -> PolicySettings:
        """The `[policy]` table with the profile chosen by flag or env applied."""
        return dataclasses.replace(self.policy, profile=self.policy_profile)


# Integer settings given in bytes, which also accept `32M`, `1G`, `512k`.
SIZE_FIELDS = frozenset(
    {"segment_threshold", "segment_size", "max_size", "disk_reserve", "local_cache_size"}
)
_SIZE = re.compile(r"(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>[kmgt]?)i?b?")
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(value: str) -> int:
    """Bytes in `1048576`, `512k`, `32M`, `32MiB`, `1G`, `100GB` (powers of 1024)."""
    match = _SIZE.fullmatch(value.strip().lower())
    if match is None:
        raise ConfigError(f"not a size: {value!r} (use e.g. 32M, 1G)")
    return int(float(match["number"]) * _SIZE_UNITS[match["unit"]])


def parse_duration(value: str) -> float:
    """Seconds in `300`, `300s`, `5m`, `6h`, `30d`, `1w` or `250ms`."""
    match = _DURATION.fullmatch(value.strip().lower())
    if match is None:
        raise ConfigError(f"not a duration: {value!r} (use e.g. 300, 5m, 6h, 30d)")
    return float(match["number"]) * _DURATION_UNITS[match["unit"] or "s"]


def _parse_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"not a boolean: {value!r}")


def _coerce(name: str, value: Any) -> Any:
    """Turn a value from TOML, env or flags into the field's type."""
    default = getattr(Settings(), name)
    if name in TABLE_FIELDS:
        return value
    try:
        if isinstance(default, bool):
            return value if isinstance(value, bool) else _parse_bool(str(value))
        if name in SIZE_FIELDS:
            return value if isinstance(value, int) else parse_size(str(value))
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value) if isinstance(value, int | float) else parse_duration(str(value))
        if isinstance(default, Path):
            return Path(str(value)).expanduser()
    except (ValueError, TypeError) as error:
        raise ConfigError(f"setting {name}: {error}") from error
    return str(value)


# Settings that come from TOML tables only, never from flags or env vars.
TABLE_FIELDS = frozenset({"policy", "access", "upstreams"})
FIELD_NAMES = tuple(
    field.name for field in dataclasses.fields(Settings) if field.name not in TABLE_FIELDS
)
_TYPE_TABLES = {
    **{repo_type.plural: repo_type for repo_type in RepoType},
    **{repo_type.value: repo_type for repo_type in RepoType},
}


def _strings(table: dict[str, Any], key: str) -> tuple[str, ...]:
    value = table.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{key} must be a list of strings")
    return tuple(value)


def _type_rules(table: dict[str, Any]) -> TypeRules:
    unknown = set(table) - {"allow", "deny", "include", "exclude", "keep"}
    if unknown:
        raise ConfigError(f"unknown keys in a policy type table: {sorted(unknown)}")
    return TypeRules(
        *(_strings(table, key) for key in ("allow", "deny", "include", "exclude", "keep"))
    )


SCAN_MODES = ("block", "warn", "off")


def policy_from_table(table: dict[str, Any]) -> PolicySettings:
    """The `[policy]` table, with `[policy.models]`-style per-type tables."""
    per_type = []
    scalars = {}
    for key, value in table.items():
        if isinstance(value, dict):
            if key not in _TYPE_TABLES:
                raise ConfigError(f"unknown policy table [policy.{key}]")
            per_type.append((_TYPE_TABLES[key], _type_rules(value)))
        else:
            scalars[key.replace("-", "_")] = value
    mode = scalars.pop("mode", "open")
    if mode not in ("open", "allowlist"):
        raise ConfigError("policy mode must be 'open' or 'allowlist'")
    known = {
        "profile",
        "allowlist_only",
        "allow",
        "deny",
        "include",
        "exclude",
        "keep",
        "allow_pr_refs",
        "max_file_size",
        "scan",
        "licenses_allow",
        "licenses_deny",
    }
    if set(scalars) - known:
        raise ConfigError(f"unknown policy settings: {sorted(set(scalars) - known)}")
    size = scalars.get("max_file_size")
    scan = str(scalars.get("scan", "block"))
    if scan not in SCAN_MODES:
        raise ConfigError(f"policy scan must be one of {', '.join(SCAN_MODES)}")
    return PolicySettings(
        scan=scan,
        licenses_allow=_strings(scalars, "licenses_allow"),
        licenses_deny=_strings(scalars, "licenses_deny"),
        profile=str(scalars.get("profile", DEFAULT_PROFILE)),
        allowlist_only=bool(scalars.get("allowlist_only", False)) or mode == "allowlist",
        allow=_strings(scalars, "allow"),
        deny=_strings(scalars, "deny"),
        include=_strings(scalars, "include"),
        exclude=_strings(scalars, "exclude"),
        keep=_strings(scalars, "keep"),
        allow_pr_refs=bool(scalars.get("allow_pr_refs", False)),
        max_file_size=None
        if size is None
        else (size if isinstance(size, int) else parse_size(str(size))),
        per_type=tuple(per_type),
    )


def access_from_table(table: dict[str, Any]) -> AccessSettings:
    """The `[access]` table: token hashes and `[[access.offline]]` grants."""
    grants = []
    for grant in table.get("offline", []):
        if not isinstance(grant, dict) or not isinstance(grant.get("token_sha256"), str):
            raise ConfigError("each [[access.offline]] needs token_sha256 and repos")
        grants.append(OfflineGrant(grant["token_sha256"], _strings(grant, "repos")))
    return AccessSettings(
        tokens=_strings(table, "tokens"),
        admin_tokens=_strings(table, "admin_tokens"),
        offline_grants=tuple(grants),
    )


def upstreams_from_value(value: Any, environ: Mapping[str, str]) -> tuple[UpstreamConfig, ...]:
    """Upstreams from repeated flags (a list of URLs), a comma-separated string (env or
    TOML) or `[[upstream]]` tables with url, token (or token_env) and weight."""
    if isinstance(value, str):
        value = [url.strip() for url in value.split(",") if url.strip()]
    if not isinstance(value, list) or not value:
        raise ConfigError("upstream must be a URL, a list of URLs or [[upstream]] tables")
    upstreams = []
    for item in value:
        if isinstance(item, str):
            upstreams.append(UpstreamConfig(validate_upstream_url(item)))
            continue
        if not isinstance(item, dict) or not isinstance(item.get("url"), str):
            raise ConfigError("each [[upstream]] table needs a url")
        unknown = set(item) - {"url", "token", "token_env", "weight"}
        if unknown:
            raise ConfigError(f"unknown keys in an [[upstream]] table: {sorted(unknown)}")
        token = item.get("token")
        if item.get("token_env"):
            token = environ.get(str(item["token_env"])) or None
        weight = item.get("weight")
        if weight is not None and (not isinstance(weight, int | float) or weight < 0):
            raise ConfigError("an upstream's weight must be a number >= 0")
        upstreams.append(
            UpstreamConfig(
                validate_upstream_url(item["url"]),
                None if token is None else str(token),
                None if weight is None else float(weight),
            )
        )
    return tuple(upstreams)


def _from_toml(path: Path) -> dict[str, Any]:
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"cannot read config file {path}: {error}") from error
    section = document.get("hubmirror", document)
    values: dict[str, Any] = {}
    for key, value in section.items():
        name = key.replace("-", "_")
        if name in FIELD_NAMES:
            values[name] = value
        elif not isinstance(value, dict):
            raise ConfigError(f"unknown setting {key!r} in {path}")
    tables = {**document, **section}
    if isinstance(tables.get("policy"), dict):
        values["policy"] = policy_from_table(tables["policy"])
        values.setdefault("policy_profile", values["policy"].profile)
    if isinstance(tables.get("access"), dict):
        values["access"] = access_from_table(tables["access"])
    governance = tables.get("governance")
    if isinstance(governance, dict):
        if "contact" in governance:
            values.setdefault("approval_contact", governance["contact"])
        if "notify_url" in governance:
            values.setdefault("notify_url", governance["notify_url"])
    return values


def load_settings(
    flags: Mapping[str, Any], environ: Mapping[str, str], config_file: Path | None = None
) -> Settings:
    """Merge the sources, most specific last; `flags` holds only the flags given."""
    if config_file is None and environ.get(f"{ENV_PREFIX}CONFIG"):
        config_file = Path(environ[f"{ENV_PREFIX}CONFIG"])
    merged: dict[str, Any] = {}
    if config_file is not None:
        merged.update(_from_toml(config_file))
    for name in FIELD_NAMES:
        env_value = environ.get(f"{ENV_PREFIX}{name.upper()}")
        if env_value is not None:
            merged[name] = env_value
    merged.update({name: value for name, value in flags.items() if value is not None})
    if "upstream" in merged:
        upstreams = upstreams_from_value(merged["upstream"], environ)
        merged["upstream"] = upstreams[0].url
        if len(upstreams) > 1 or upstreams[0].token or upstreams[0].weight is not None:
            merged["upstreams"] = upstreams
    settings = Settings(**{name: _coerce(name, value) for name, value in merged.items()})
    if settings.log_format not in LOG_FORMATS:
        raise ConfigError(f"log_format must be one of {', '.join(LOG_FORMATS)}")
    return settings


LOG_FORMATS = ("text", "json")


def validate_upstream_url(url: str) -> str:
    """An http(s) origin, without a trailing slash."""
    if not re.fullmatch(r"https?://[^\s/]+(/[^\s]*)?", url):
        raise ConfigError(f"upstream must be an http(s) URL, got {url!r}")
    return url.rstrip("/")
