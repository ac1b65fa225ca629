"""One typed Settings object: defaults < TOML file < `HUBMIRROR_*` env vars < flags.

Read once at the entry point and passed down through constructors; nothing reads the
environment at import time.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hubmirror.core.errors import BadRequestError

ENV_PREFIX = "HUBMIRROR_"
_DURATION = re.compile(r"(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|m|h|d|w)?")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class ConfigError(ValueError):
    """A setting has a value of the wrong shape."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the mirror can be configured with."""

    host: str = "127.0.0.1"
    port: int = 8090
    cache_dir: Path = Path("hubmirror-data")
    upstream: str = "https://huggingface.co"
    offline: bool = False
    revision_ttl: float = 300.0
    log_level: str = "info"
    upstream_connections: int = 8
    upstream_retries: int = 5
    segment_threshold: int = 32 * 1024 * 1024
    segment_size: int = 8 * 1024 * 1024


# Integer settings given in bytes, which also accept `32M`, `1G`, `512k`.
SIZE_FIELDS = frozenset({"segment_threshold", "segment_size"})
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


FIELD_NAMES = tuple(field.name for field in dataclasses.fields(Settings))


def _from_toml(path: Path) -> dict[str, Any]:
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"cannot read config file {path}: {error}") from error
    section = document.get("hubmirror", document)
    values = {}
    for key, value in section.items():
        name = key.replace("-", "_")
        if name in FIELD_NAMES:
            values[name] = value
        elif not isinstance(value, dict):
            raise ConfigError(f"unknown setting {key!r} in {path}")
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
    return Settings(**{name: _coerce(name, value) for name, value in merged.items()})


def validate_upstream_url(url: str) -> str:
    """An http(s) origin, without a trailing slash."""
    if not re.fullmatch(r"https?://[^\s/]+(/[^\s]*)?", url):
        raise BadRequestError(f"upstream must be an http(s) URL, got {url!r}")
    return url.rstrip("/")
