"""The SQLite index's file across versions: an install from before versioning opens and
upgrades in place; a newer hubmirror's file is refused."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from hubmirror.core.errors import CacheUnavailableError
from hubmirror.core.types import BlobKey, FileEntry, HashAlgorithm, RepoRef, RepoType
from hubmirror.storage.index import StoredRef
from hubmirror.storage.sqlite_database import SqliteDatabase
from hubmirror.storage.sqlite_index import SqliteIndex
from hubmirror.storage.sqlite_schema import LATEST_VERSION, schema_version

REPO = RepoRef(RepoType.MODEL, "ns/model")
COMMIT = "c" * 40
KEY = BlobKey(HashAlgorithm.SHA256, "e" * 64)

# The tables as hubmirror made them before the schema had versions (no pending_blobs).
UNVERSIONED_TABLES = """
CREATE TABLE refs (repo_type TEXT NOT NULL, repo_id TEXT NOT NULL, revision TEXT NOT NULL,
    commit_sha TEXT NOT NULL, checked_at REAL NOT NULL,
    PRIMARY KEY (repo_type, repo_id, revision));
CREATE TABLE repos (repo_type TEXT NOT NULL, repo_id TEXT NOT NULL, visibility TEXT NOT NULL,
    PRIMARY KEY (repo_type, repo_id));
CREATE TABLE documents (repo_type TEXT NOT NULL, repo_id TEXT NOT NULL,
    commit_sha TEXT NOT NULL, kind TEXT NOT NULL, variant TEXT NOT NULL, body TEXT NOT NULL,
    next_cursor TEXT, PRIMARY KEY (repo_type, repo_id, commit_sha, kind, variant));
CREATE TABLE files (repo_type TEXT NOT NULL, repo_id TEXT NOT NULL, commit_sha TEXT NOT NULL,
    path TEXT NOT NULL, size INTEGER NOT NULL, algorithm TEXT NOT NULL,
    hexdigest TEXT NOT NULL, git_oid TEXT, PRIMARY KEY (repo_type, repo_id, commit_sha, path));
CREATE TABLE listings (repo_type TEXT NOT NULL, repo_id TEXT NOT NULL,
    commit_sha TEXT NOT NULL, PRIMARY KEY (repo_type, repo_id, commit_sha));
CREATE TABLE blobs (algorithm TEXT NOT NULL, hexdigest TEXT NOT NULL, size INTEGER NOT NULL,
    stored_at REAL NOT NULL, last_access REAL NOT NULL, PRIMARY KEY (algorithm, hexdigest));
CREATE INDEX blobs_by_access ON blobs (last_access);
CREATE INDEX files_by_blob ON files (algorithm, hexdigest);
CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE pins (repo_type TEXT NOT NULL, repo_id TEXT NOT NULL,
    PRIMARY KEY (repo_type, repo_id));
INSERT INTO refs VALUES ('model', 'ns/model', 'main', printf('%.40c', 'c'), 12.5);
INSERT INTO files VALUES ('model', 'ns/model', printf('%.40c', 'c'),
    'model.bin', 5, 'sha256', printf('%.64c', 'e'), NULL);
INSERT INTO blobs VALUES ('sha256', printf('%.64c', 'e'), 5, 1.0, 2.0);
INSERT INTO counters VALUES ('upstream_bytes', 42);
INSERT INTO pins VALUES ('model', 'ns/model');
"""


def unversioned_file(path: Path) -> None:
    connection = sqlite3.connect(path)
    try:
        connection.executescript(UNVERSIONED_TABLES)
        assert schema_version(connection) == 0
    finally:
        connection.close()


async def test_an_index_from_before_versioning_upgrades_with_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite3"
    unversioned_file(path)
    index = SqliteIndex(SqliteDatabase(path))
    try:
        assert await index.ref(REPO, "main") == StoredRef(COMMIT, 12.5)
        assert await index.file(REPO, COMMIT, "model.bin") == FileEntry("model.bin", 5, KEY)
        assert await index.stored_blobs() == [(KEY, 5)]
        assert await index.counter("upstream_bytes") == 42
        assert await index.pinned() == [REPO]
        # The table the upgrade added works.
        await index.begin_blob(KEY, 5)
        assert await index.pending_blobs() == [(KEY, 5)]
        assert await index.integrity_problem(thorough=True) is None
    finally:
        await index.close()
    connection = sqlite3.connect(path)
    try:
        assert schema_version(connection) == LATEST_VERSION
    finally:
        connection.close()


def test_a_file_from_a_newer_hubmirror_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite3"
    connection = sqlite3.connect(path)
    connection.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    connection.close()
    with pytest.raises(CacheUnavailableError, match="newer than this hubmirror"):
        SqliteDatabase(path)
