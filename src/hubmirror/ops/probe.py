"""`hubmirror probe` and `run`: which Hub endpoint answers, how fast, and which is best.

Per endpoint: health (`/-/health` when it is a hubmirror, else a small repo-info call
that a Hub answers), latency (the median of a few more such requests) and, for a
`--file`, throughput of a ranged read bounded in bytes and time. Endpoints are probed
at the same time, each in a daemon thread, and one that has not answered its first
request after `timeout` (plus a little grace) is given up: a dead endpoint costs a
couple of seconds, whatever hangs (DNS included). Standard library only.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from email.message import Message
from typing import Any

HEALTH_PATH = "/-/health"
USER_AGENT = "hubmirror-probe"
DEFAULT_REPO = "openai-community/gpt2"
REPO_TYPE_PREFIXES = {"datasets": "datasets", "spaces": "spaces"}
_GRACE_SECONDS = 0.5
_CHUNK = 64 * 1024


@dataclasses.dataclass(frozen=True, slots=True)
class ProbeSettings:
    """Bounds of one probe: `timeout` per connect or read, `samples` latency requests,
    and the ranged read of `sample_file` (`REPO/PATH`) stops at `read_bytes` or after
    `read_seconds`."""

    timeout: float = 2.0
    samples: int = 3
    read_bytes: int = 4 * 1024 * 1024
    read_seconds: float = 5.0
    sample_file: str | None = None

    @property
    def longest_seconds(self) -> float:
        """How long a probe of an endpoint that answers may take at most."""
        requests = 2 + self.samples + (1 if self.sample_file else 0)
        return requests * self.timeout + (self.read_seconds if self.sample_file else 0.0)


@dataclasses.dataclass(frozen=True, slots=True)
class ProbeResult:
    """What probing one endpoint found. `kind` is `hubmirror`, `hub` (another Hub
    endpoint: the Hub itself, another mirror) or empty when nothing answered."""

    endpoint: str
    healthy: bool
    kind: str = ""
    version: str | None = None
    latency_ms: float | None = None
    throughput_bytes_per_second: float | None = None
    error: str | None = None

    def as_json(self) -> dict[str, object]:
        """The result as a JSON-ready dict."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True, slots=True)
class SampleFile:
    """A file to read for throughput: `REPO/PATH`, the repo id `namespace/name`, with
    an optional `datasets/` or `spaces/` in front."""

    repo_prefix: str
    repo_id: str
    path: str

    @classmethod
    def parse(cls, text: str) -> SampleFile:
        """Split `[datasets/]namespace/name/path/in/repo`; ValueError when too short."""
        segments = [segment for segment in text.strip("/").split("/") if segment]
        prefix = ""
        if segments and segments[0] in REPO_TYPE_PREFIXES:
            prefix = segments.pop(0) + "/"
        if len(segments) < 3:
            raise ValueError(f"--file wants REPO/PATH with REPO as namespace/name: {text!r}")
        return cls(prefix, "/".join(segments[:2]), "/".join(segments[2:]))

    @property
    def info_path(self) -> str:
        """The repo-info API path of the repo."""
        kind = REPO_TYPE_PREFIXES.get(self.repo_prefix.rstrip("/"), "models")
        return f"/api/{kind}/{self.repo_id}"

    @property
    def resolve_path(self) -> str:
        """The file's resolve path at `main`."""
        return f"/{self.repo_prefix}{self.repo_id}/resolve/main/{self.path}"


@dataclasses.dataclass(slots=True)
class _Answer:
    status: int
    headers: Message
    body: bytes
    seconds: float


def _open(url: str, timeout: float, headers: dict[str, str] | None = None) -> Any:
    """Start a GET of `url` (always http or https: endpoints are normalised)."""
    request = urllib.request.Request(  # noqa: S310
        url, headers={"User-Agent": USER_AGENT, **(headers or {})}
    )
    return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310


def _get(url: str, timeout: float) -> _Answer:
    """GET `url`; an HTTP error status is an answer. Raises OSError when unreachable."""
    started = time.monotonic()
    try:
        with _open(url, timeout) as response:
            body = response.read(_CHUNK)
            return _Answer(response.status, response.headers, body, time.monotonic() - started)
    except urllib.error.HTTPError as error:
        with error:
            body = error.read(_CHUNK)
            return _Answer(error.code, error.headers, body, time.monotonic() - started)


def _mirror_version(answer: _Answer) -> str | None:
    """The version a hubmirror's health answer names, or None for anything else."""
    if answer.status != 200:
        return None
    try:
        document = json.loads(answer.body)
    except ValueError:
        return None
    if not isinstance(document, dict) or document.get("status") != "ok":
        return None
    return str(document.get("version", ""))


def _reason(error: BaseException) -> str:
    """A short reason: `Connection refused`, `timed out`, `Name or service not known`."""
    if isinstance(error, urllib.error.URLError) and isinstance(error.reason, BaseException):
        error = error.reason
    if isinstance(error, OSError) and error.strerror:
        return str(error.strerror)
    return str(error) or type(error).__name__


def probe_endpoint(
    endpoint: str, settings: ProbeSettings, answered: Callable[[], None] = lambda: None
) -> ProbeResult:
    """Probe one endpoint; call `answered` once its first request got an answer."""
    sample_file = SampleFile.parse(settings.sample_file) if settings.sample_file else None
    try:
        health = _get(endpoint + HEALTH_PATH, settings.timeout)
    except OSError as error:
        return ProbeResult(endpoint, healthy=False, error=_reason(error))
    answered()
    version = _mirror_version(health)
    kind, check_path = "hubmirror", HEALTH_PATH
    if version is None:
        kind = "hub"
        check_path = sample_file.info_path if sample_file else f"/api/models/{DEFAULT_REPO}"
        try:
            check = _get(endpoint + check_path, settings.timeout)
        except OSError as error:
            return ProbeResult(endpoint, healthy=False, kind=kind, error=_reason(error))
        hub_shaped = check.status < 500 and check.status != 429 and "X-Error-Code" in check.headers
        if check.status != 200 and not hub_shaped:
            return ProbeResult(endpoint, False, kind, error=f"HTTP {check.status} on {check_path}")
    try:
        samples = [_get(endpoint + check_path, settings.timeout) for _ in range(settings.samples)]
    except OSError as error:
        return ProbeResult(endpoint, False, kind, version, error=_reason(error))
    latency = statistics.median(sample.seconds for sample in samples) * 1000 if samples else None
    throughput, error_text = None, None
    if sample_file is not None:
        throughput, error_text = _throughput(endpoint + sample_file.resolve_path, settings)
    return ProbeResult(endpoint, True, kind, version, latency, throughput, error_text)


def _throughput(url: str, settings: ProbeSettings) -> tuple[float | None, str | None]:
    """Bytes per second of a ranged read of at most `read_bytes` / `read_seconds`."""
    started = time.monotonic()
    received = 0
    try:
        with _open(
            url, settings.timeout, {"Range": f"bytes=0-{settings.read_bytes - 1}"}
        ) as response:
            while received < settings.read_bytes:
                if time.monotonic() - started > settings.read_seconds:
                    break
                chunk = response.read(min(_CHUNK, settings.read_bytes - received))
                if not chunk:
                    break
                received += len(chunk)
    except urllib.error.HTTPError as error:
        error.close()
        return None, f"HTTP {error.code} reading the test file"
    except OSError as error:
        if not received:
            return None, f"reading the test file: {_reason(error)}"
    elapsed = time.monotonic() - started
    return (received / elapsed if elapsed > 0 and received else None), None


def probe_all(endpoints: Sequence[str], settings: ProbeSettings) -> list[ProbeResult]:
    """Probe every endpoint at once; results in the order given."""
    results: list[ProbeResult | None] = [None] * len(endpoints)
    answered = [threading.Event() for _ in endpoints]
    done = [threading.Event() for _ in endpoints]

    def work(position: int, endpoint: str) -> None:
        try:
            results[position] = probe_endpoint(endpoint, settings, answered[position].set)
        finally:
            answered[position].set()
            done[position].set()

    for position, endpoint in enumerate(endpoints):
        name = f"probe-{position}"
        threading.Thread(target=work, args=(position, endpoint), name=name, daemon=True).start()
    started = time.monotonic()
    first_answer_by = started + settings.timeout + _GRACE_SECONDS
    finished_by = started + settings.longest_seconds + _GRACE_SECONDS
    for position in range(len(endpoints)):
        if answered[position].wait(max(first_answer_by - time.monotonic(), 0.0)):
            done[position].wait(max(finished_by - time.monotonic(), 0.0))
    return [
        result
        if result is not None and done[position].is_set()
        else ProbeResult(
            endpoints[position],
            healthy=False,
            error=f"no answer within {settings.timeout + _GRACE_SECONDS:.1f} s"
            if not answered[position].is_set()
            else "probe did not finish in time",
        )
        for position, result in enumerate(results)
    ]


def best_endpoint(results: Sequence[ProbeResult]) -> ProbeResult | None:
    """The healthy endpoint to use: the highest throughput where measured, else the
    lowest latency; ties go to the earlier endpoint (the list is a priority order)."""
    healthy = [result for result in results if result.healthy]
    if not healthy:
        return None
    return min(
        healthy,
        key=lambda result: (
            -(result.throughput_bytes_per_second or 0.0),
            result.latency_ms if result.latency_ms is not None else float("inf"),
        ),
    )
