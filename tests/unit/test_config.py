"""Settings: flags win over env over the TOML file over defaults."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

from hubmirror import __version__
from hubmirror.config import Settings, load_settings, parse_duration
from hubmirror.core.errors import BadRequestError, ConfigError


def test_defaults() -> None:
    settings = load_settings({}, {})
    assert settings == Settings()
    assert (settings.host, settings.port, settings.upstream) == (
        "127.0.0.1",
        8090,
        "https://huggingface.co",
    )
    assert settings.cache_dir == Path("hubmirror-data")


def test_precedence(tmp_path: Path) -> None:
    config = tmp_path / "mirror.toml"
    config.write_text(
        'port = 1000\nupstream = "http://file"\ncache-dir = "/from/file"\n'
        'revision_ttl = "10m"\noffline = true\n'
    )
    environ = {"HUBMIRROR_PORT": "2000", "HUBMIRROR_UPSTREAM": "http://env"}
    settings = load_settings({"port": 3000, "host": None}, environ, config)
    assert settings.port == 3000
    assert settings.upstream == "http://env"
    assert settings.cache_dir == Path("/from/file")
    assert settings.revision_ttl == 600
    assert settings.offline is True


def test_config_file_from_env(tmp_path: Path) -> None:
    config = tmp_path / "mirror.toml"
    config.write_text('[hubmirror]\nhost = "0.0.0.0"\n')
    settings = load_settings({}, {"HUBMIRROR_CONFIG": str(config), "HUBMIRROR_OFFLINE": "1"})
    assert settings.host == "0.0.0.0"
    assert settings.offline is True


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("300", 300), ("5m", 300), ("6h", 21600), ("30d", 2592000), ("250ms", 0.25)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_bad_values_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_settings({}, {"HUBMIRROR_PORT": "eighty"})
    with pytest.raises(ConfigError):
        load_settings({}, {"HUBMIRROR_OFFLINE": "maybe"})
    config = tmp_path / "bad.toml"
    config.write_text("no_such_setting = 1\n")
    with pytest.raises(ConfigError):
        load_settings({}, {}, config)


def test_version_command() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "hubmirror", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert completed.stdout.strip() == f"hubmirror {__version__}"


def test_version_is_the_installed_package_metadata() -> None:
    # pyproject.toml takes the version from hubmirror.__version__: one source.
    assert importlib.metadata.version("hubmirror") == __version__


def test_hash_token_command_prints_the_configurable_hash() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "hubmirror", "hash-token"],
        input="abc\n",
        capture_output=True,
        text=True,
        check=True,
    )
    assert completed.stdout.strip() == (
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def test_repeated_upstream_flags_are_failover_upstreams_in_order() -> None:
    settings = load_settings({"upstream": ["http://a/", "http://b"]}, {})
    assert settings.upstream == "http://a"
    assert [(u.url, u.weight) for u in settings.upstream_list()] == [
        ("http://a", 1.0),
        ("http://b", 0.0),
    ]


def test_upstreams_from_a_comma_separated_env_var() -> None:
    settings = load_settings({}, {"HUBMIRROR_UPSTREAM": "http://a, http://b"})
    assert [u.url for u in settings.upstream_list()] == ["http://a", "http://b"]


def test_upstream_tables_with_token_from_env_and_weights(tmp_path: Path) -> None:
    config = tmp_path / "mirror.toml"
    config.write_text(
        '[[upstream]]\nurl = "https://huggingface.co"\ntoken_env = "HUB_TOKEN"\nweight = 3\n'
        '[[upstream]]\nurl = "http://regional:8090"\nweight = 1\n'
    )
    settings = load_settings({}, {"HUB_TOKEN": "hf_secret"}, config)
    first, second = settings.upstream_list()
    assert (first.url, first.token, first.weight) == ("https://huggingface.co", "hf_secret", 3.0)
    assert (second.url, second.token, second.weight) == ("http://regional:8090", None, 1.0)
    assert "hf_secret" not in repr(settings)


@pytest.mark.parametrize(
    "table",
    [
        "[[upstream]]\nweight = 1\n",
        '[[upstream]]\nurl = "ftp://x"\n',
        '[[upstream]]\nurl = "http://x"\nweight = -1\n',
        '[[upstream]]\nurl = "http://x"\ncolour = "red"\n',
    ],
)
def test_bad_upstream_tables_are_refused(tmp_path: Path, table: str) -> None:
    config = tmp_path / "mirror.toml"
    config.write_text(table)
    with pytest.raises((ConfigError, BadRequestError)):
        load_settings({}, {}, config)


def test_resilience_settings_parse_durations_and_numbers() -> None:
    settings = load_settings(
        {
            "answer_timeout": "9s",
            "upstream_rate": "20",
            "negative_ttl": "2m",
            "max_stale": "1d",
            "upstream_concurrency": 4,
        },
        {},
    )
    assert (settings.answer_timeout, settings.upstream_rate, settings.negative_ttl) == (
        9.0,
        20.0,
        120.0,
    )
    assert (settings.max_stale, settings.upstream_concurrency) == (86400.0, 4)


def test_log_format_and_metrics_token_from_every_source(tmp_path: Path) -> None:
    config = tmp_path / "mirror.toml"
    config.write_text('log_format = "json"\nmetrics-token = "sha256:abc"\n')
    from_file = load_settings({}, {}, config)
    assert (from_file.log_format, from_file.metrics_token) == ("json", "sha256:abc")
    from_env = load_settings({}, {"HUBMIRROR_LOG_FORMAT": "json", "HUBMIRROR_METRICS_TOKEN": "t"})
    assert (from_env.log_format, from_env.metrics_token) == ("json", "t")
    from_flags = load_settings({"log_format": "text", "metrics_token": "u"}, {}, config)
    assert (from_flags.log_format, from_flags.metrics_token) == ("text", "u")
    assert (Settings().log_format, Settings().metrics_token) == ("text", "")


def test_an_unknown_log_format_is_refused() -> None:
    with pytest.raises(ConfigError, match="log_format"):
        load_settings({}, {"HUBMIRROR_LOG_FORMAT": "xml"})


def test_serve_accepts_the_new_flags() -> None:
    from hubmirror.cli.parser import build_parser, settings_from_arguments

    arguments = build_parser().parse_args(
        ["serve", "--log-format", "json", "--metrics-token", "sha256:ff"]
    )
    settings = settings_from_arguments(arguments)
    assert (settings.log_format, settings.metrics_token) == ("json", "sha256:ff")
