"""The audit log rotates by size and reads back in order, skipping torn lines."""

from __future__ import annotations

from pathlib import Path

from hubmirror.services.audit import AuditLog, AuditRecord


def record(index: int, repo: str = "a/b", user: str = "anonymous") -> AuditRecord:
    return AuditRecord(
        time=AuditRecord.now(),
        client="127.0.0.1",
        user=user,
        repo_type="model",
        repo=repo,
        revision="main",
        commit="c" * 40,
        path=f"f{index}",
        bytes=index,
        cache="HIT",
        duration_ms=1.0,
        result="ok",
    )


def test_rotation_keeps_order_and_bounds(tmp_path: Path) -> None:
    log = AuditLog(tmp_path, max_bytes=1000, backups=3)
    for index in range(40):
        log.record(record(index, user="abcd1234" if index % 2 else "anonymous"))
    assert len(log.files()) == 4
    assert all(path.stat().st_size <= 1000 for path in log.files())
    paths = [r.path for r in log.read()]
    assert paths == sorted(paths, key=lambda p: int(p[1:]))
    assert paths[-1] == "f39"
    assert all(r.user == "abcd1234" for r in log.read(user="abcd"))
    assert list(log.read(repo="other/x")) == []
    log.close()


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    log = AuditLog(tmp_path)
    log.record(record(1))
    log.close()
    with log.path.open("a") as file:
        file.write('{"time": "2026-')
    assert [r.path for r in log.read(since=3600)] == ["f1"]


def test_recent_gives_the_newest_records_first_across_rotated_files(tmp_path: Path) -> None:
    log = AuditLog(tmp_path, max_bytes=1000, backups=3)
    for index in range(12):
        log.record(record(index))
    assert len(log.files()) >= 2
    assert [r.path for r in log.recent(6)] == ["f11", "f10", "f9", "f8", "f7", "f6"]
    assert log.recent(50, tail_bytes=600)[0].path == "f11"
    assert len(log.recent(50, tail_bytes=600)) < 12  # only the tails were read
    log.close()
