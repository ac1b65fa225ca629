"""An image's filesystem, mounted by `tests/image/run.sh`, and its processes in a chroot.

A container runtime starts the entry point as the image's user, in its working
directory, with its environment; `ImageRoot` does the same with `chroot --userspec`
and the image's own `env`, so what is checked is what the image says, not a copy of it.
The chroot shares the host's network: the fake Hub on 127.0.0.1 is reachable.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

COMMAND_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class ImageConfig:
    """The parts of `podman image inspect` a runtime acts on."""

    user: str
    environment: dict[str, str]
    entrypoint: list[str]
    command: list[str]
    working_dir: str
    volumes: list[str]
    exposed_ports: list[str]
    stop_signal: str
    healthcheck: list[str]

    @classmethod
    def inspect(cls, tag: str) -> ImageConfig:
        completed = subprocess.run(
            ["podman", "image", "inspect", tag],
            capture_output=True,
            text=True,
            check=True,
            timeout=COMMAND_TIMEOUT_SECONDS,
        )
        image = cast(list[dict[str, Any]], json.loads(completed.stdout))[0]
        config = cast(dict[str, Any], image["Config"])
        healthcheck = cast(dict[str, Any], image.get("Healthcheck") or {})
        return cls(
            user=str(config.get("User", "")),
            environment=dict(
                entry.split("=", 1) for entry in cast(list[str], config.get("Env") or [])
            ),
            entrypoint=list(config.get("Entrypoint") or []),
            command=list(config.get("Cmd") or []),
            working_dir=str(config.get("WorkingDir") or "/"),
            volumes=sorted(config.get("Volumes") or {}),
            exposed_ports=sorted(config.get("ExposedPorts") or {}),
            stop_signal=str(config.get("StopSignal", "")),
            healthcheck=list(healthcheck.get("Test") or []),
        )


@dataclass(frozen=True)
class Account:
    """The image's user as its own /etc/passwd and /etc/group define it."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str


def _colon_table(path: Path) -> list[list[str]]:
    return [line.split(":") for line in path.read_text().splitlines() if line]


def resolve_account(root: Path, user: str) -> Account:
    """`user` or `user:group` (names or numbers) looked up inside the image."""
    user_part, _, group_part = user.partition(":")
    passwd = _colon_table(root / "etc" / "passwd")
    groups = _colon_table(root / "etc" / "group")
    (entry,) = [row for row in passwd if user_part in (row[0], row[2])]
    gid = int(entry[3])
    if group_part:
        (group,) = [row for row in groups if group_part in (row[0], row[2])]
        gid = int(group[2])
    extra = tuple(int(row[2]) for row in groups if entry[0] in row[3].split(","))
    return Account(entry[0], int(entry[2]), gid, (gid, *extra), entry[5])


class ImageRoot:
    """Runs commands inside the mounted image as its configured user."""

    def __init__(self, root: Path, config: ImageConfig) -> None:
        self.root = root
        self.config = config
        self.account = resolve_account(root, config.user or "root")
        chroot = shutil.which("chroot")
        assert chroot is not None, "chroot (coreutils) is missing"
        self._chroot = chroot

    def host_path(self, image_path: str) -> Path:
        """Where a path inside the image is on the host."""
        return self.root / image_path.lstrip("/")

    def environment(self, overrides: Mapping[str, str]) -> dict[str, str]:
        """The image's environment, as `docker run -e` would give it with `overrides`."""
        return {"HOME": self.account.home, **self.config.environment, **overrides}

    def argv(self, command: Sequence[str]) -> list[str]:
        account = self.account
        return [
            self._chroot,
            f"--userspec={account.uid}:{account.gid}",
            f"--groups={','.join(str(gid) for gid in account.groups)}",
            str(self.root),
            # The image's own env: cd to WORKDIR, then find the program on the image's PATH.
            "/usr/bin/env",
            f"--chdir={self.config.working_dir}",
            *command,
        ]

    def run(
        self, command: Sequence[str], overrides: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(command),
            env=self.environment(overrides or {}),
            capture_output=True,
            text=True,
            check=False,
            timeout=COMMAND_TIMEOUT_SECONDS,
        )

    def start(
        self, command: Sequence[str], overrides: Mapping[str, str], log: Path
    ) -> subprocess.Popen[bytes]:
        """Start a long-running command; chroot and env exec, so its pid is the program's."""
        with log.open("ab") as output:
            return subprocess.Popen(
                self.argv(command),
                env=self.environment(overrides),
                stdout=output,
                stderr=subprocess.STDOUT,
            )


def process_ids(pid: int) -> tuple[list[int], list[int], list[int]]:
    """Real/effective/saved/fs uids, gids and supplementary groups of a running process."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return (
        [int(value) for value in fields["Uid"].split()],
        [int(value) for value in fields["Gid"].split()],
        [int(value) for value in fields["Groups"].split()],
    )
