"""The `Index` contract, run against every index: SQLite, PostgreSQL, and `CachedIndex`
in front of each. Every backend must give the same answers to the same calls."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hubmirror.core.types import (
    BlobKey,
    FileEntry,
    HashAlgorithm,
    RepoRef,
    RepoType,
    RequestStatus,
    Visibility,
)
from hubmirror.storage.cached_index import CachedIndex
from hubmirror.storage.index import AuditFilter, AuditRow, Index, StoredDocument, StoredRef
from hubmirror.storage.postgres_index import PostgresIndex
from hubmirror.storage.sqlite_database import SqliteDatabase
from hubmirror.storage.sqlite_index import SqliteIndex

MODEL = RepoRef(RepoType.MODEL, "ns/model")
DATASET = RepoRef(RepoType.DATASET, "ns/model")  # same id, other type: another repo
OTHER = RepoRef(RepoType.MODEL, "ns/other")
COMMIT = "a" * 40
NEXT_COMMIT = "b" * 40


def blob(number: int, algorithm: HashAlgorithm = HashAlgorithm.SHA256) -> BlobKey:
    """A distinct, well-formed key; `number` orders the hex digests."""
    width = 64 if algorithm is HashAlgorithm.SHA256 else 40
    return BlobKey(algorithm, f"{number:0{width}x}")


def entry(path: str, number: int, size: int = 10, git_oid: str | None = None) -> FileEntry:
    return FileEntry(path, size, blob(number), git_oid)


@pytest.fixture(params=["sqlite", "postgres", "cached-sqlite", "cached-postgres"])
def backend(request: pytest.FixtureRequest) -> tuple[str, str | None]:
    """Which index to test, and the URL of a fresh PostgreSQL schema when it needs one."""
    kind: str = request.param
    url = request.getfixturevalue("postgres_url") if kind.endswith("postgres") else None
    return kind, url


@pytest.fixture
async def index(backend: tuple[str, str | None], tmp_path: Path) -> AsyncIterator[Index]:
    kind, url = backend
    inner: Index
    if url is not None:
        inner = await PostgresIndex.open(url)
    else:
        inner = SqliteIndex(SqliteDatabase(tmp_path / "index.sqlite3"))
    opened: Index = CachedIndex(inner) if kind.startswith("cached") else inner
    try:
        yield opened
    finally:
        await opened.close()


# refs and repos -------------------------------------------------------------------------
async def test_a_ref_is_unknown_until_set_then_replaced(index: Index) -> None:
    assert await index.ref(MODEL, "main") is None
    before = time.time()
    await index.set_ref(MODEL, "main", COMMIT)
    stored = await index.ref(MODEL, "main")
    assert stored is not None
    assert stored.commit == COMMIT
    assert before <= stored.checked_at <= time.time()
    await index.set_ref(MODEL, "main", NEXT_COMMIT, checked_at=1234.5)
    assert await index.ref(MODEL, "main") == StoredRef(NEXT_COMMIT, 1234.5)


async def test_refs_belong_to_one_repo_and_revision(index: Index) -> None:
    await index.set_ref(MODEL, "main", COMMIT, checked_at=1.0)
    await index.set_ref(MODEL, "v1.0", NEXT_COMMIT, checked_at=2.0)
    assert await index.ref(DATASET, "main") is None
    assert await index.ref(OTHER, "main") is None
    assert await index.ref(MODEL, "v1.0") == StoredRef(NEXT_COMMIT, 2.0)
    assert await index.ref(MODEL, "main") == StoredRef(COMMIT, 1.0)


async def test_visibility_is_unknown_until_set_then_replaced(index: Index) -> None:
    assert await index.visibility(MODEL) is None
    await index.set_visibility(MODEL, Visibility.GATED)
    assert await index.visibility(MODEL) is Visibility.GATED
    await index.set_visibility(MODEL, Visibility.PUBLIC)
    assert await index.visibility(MODEL) is Visibility.PUBLIC
    assert await index.visibility(DATASET) is None


# documents ------------------------------------------------------------------------------
async def test_a_document_is_stored_and_overwritten(index: Index) -> None:
    assert await index.document(MODEL, COMMIT, "tree", "") is None
    await index.put_document(MODEL, COMMIT, "tree", "", '{"a": 1}', next_cursor="page2")
    assert await index.document(MODEL, COMMIT, "tree", "") == StoredDocument('{"a": 1}', "page2")
    await index.put_document(MODEL, COMMIT, "tree", "", '{"a": 2}')
    assert await index.document(MODEL, COMMIT, "tree", "") == StoredDocument('{"a": 2}', None)
    assert await index.document(MODEL, COMMIT, "tree", "expand") is None
    assert await index.document(MODEL, NEXT_COMMIT, "tree", "") is None


async def test_a_large_document_keeps_every_character(index: Index) -> None:
    body = '{"text": "' + "données €😀 " * 300_000 + '"}'  # about 5 MB of UTF-8
    await index.put_document(DATASET, COMMIT, "info", "", body)
    stored = await index.document(DATASET, COMMIT, "info", "")
    assert stored is not None
    assert stored.body == body


async def test_documents_of_a_commit_are_every_kind_and_variant(index: Index) -> None:
    await index.put_document(MODEL, COMMIT, "tree", "", "t")
    await index.put_document(MODEL, COMMIT, "tree", "recursive", "r", "cursor")
    await index.put_document(MODEL, COMMIT, "info", "", "i")
    await index.put_document(MODEL, NEXT_COMMIT, "info", "", "other commit")
    await index.put_document(OTHER, COMMIT, "info", "", "other repo")
    assert sorted(await index.documents_of(MODEL, COMMIT)) == [
        ("info", "", "i", None),
        ("tree", "", "t", None),
        ("tree", "recursive", "r", "cursor"),
    ]
    assert await index.documents_of(DATASET, COMMIT) == []


# files ----------------------------------------------------------------------------------
async def test_files_are_recorded_per_commit_and_replaced(index: Index) -> None:
    assert await index.file(MODEL, COMMIT, "config.json") is None
    await index.put_files(MODEL, COMMIT, [entry("config.json", 1, git_oid="c" * 40)])
    assert await index.file(MODEL, COMMIT, "config.json") == entry(
        "config.json", 1, git_oid="c" * 40
    )
    # Stored again, and listed twice in one call: the last entry wins.
    await index.put_files(MODEL, COMMIT, [entry("config.json", 2), entry("config.json", 3, 30)])
    assert await index.file(MODEL, COMMIT, "config.json") == entry("config.json", 3, 30)
    assert await index.file(MODEL, NEXT_COMMIT, "config.json") is None
    assert await index.file(OTHER, COMMIT, "config.json") is None


async def test_a_complete_list_marks_the_commit_listed(index: Index) -> None:
    await index.put_files(MODEL, COMMIT, [entry("a.txt", 1)])
    assert not await index.is_listed(MODEL, COMMIT)
    await index.put_files(MODEL, COMMIT, [entry("b.txt", 2)], complete=True)
    await index.put_files(MODEL, COMMIT, [], complete=True)  # again: no error
    assert await index.is_listed(MODEL, COMMIT)
    assert not await index.is_listed(MODEL, NEXT_COMMIT)
    assert not await index.is_listed(DATASET, COMMIT)
    await index.put_files(OTHER, COMMIT, [], complete=True)  # an empty repo is listed too
    assert await index.is_listed(OTHER, COMMIT)


async def test_a_listing_of_many_files_is_stored_whole(index: Index) -> None:
    listing = [entry(f"data/part-{number:05d}.parquet", number) for number in range(12_000)]
    await index.put_files(DATASET, COMMIT, listing, complete=True)
    assert await index.is_listed(DATASET, COMMIT)
    assert sorted(await index.files_under(DATASET, COMMIT, "data"), key=str) == sorted(
        listing, key=str
    )


# Paths chosen around the folder `a`: `a0` and `a.txt` sort next to `a/...` byte-wise,
# `A/x` differs only by case (a locale's collation would mix it in), `é/x` is not ASCII.
TREE = ["a", "a/b", "a/c/d", "a.txt", "a0", "ab/x", "A/x", "b", "é/x"]


@pytest.mark.parametrize(
    ("folder", "expected"),
    [
        ("", TREE),
        ("a", ["a", "a/b", "a/c/d"]),
        ("a/c", ["a/c/d"]),
        ("a/c/d", ["a/c/d"]),
        ("A", ["A/x"]),
        ("a0", ["a0"]),
        ("ab", ["ab/x"]),
        ("é", ["é/x"]),
        ("a/", []),  # a trailing slash names no folder
        ("a/c/", []),
        ("c", []),
    ],
)
async def test_files_under_a_folder(index: Index, folder: str, expected: list[str]) -> None:
    await index.put_files(MODEL, COMMIT, [entry(path, number) for number, path in enumerate(TREE)])
    await index.put_files(MODEL, NEXT_COMMIT, [entry("a/other-commit", 99)])
    found = await index.files_under(MODEL, COMMIT, folder)
    assert sorted(file.path for file in found) == sorted(expected)
    by_path = {file.path: file for file in found}
    for number, path in enumerate(TREE):
        if path in by_path:
            assert by_path[path] == entry(path, number)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("a", True),  # a file, and a folder
        ("a/c", True),
        ("a/c/d", True),
        ("a0", True),
        ("A", True),
        ("é", True),
        ("a/", False),
        ("a/c/", False),
        ("a.t", False),  # a prefix of a name is not a folder
        ("c", False),
        ("", False),
    ],
)
async def test_has_path_is_a_file_or_a_folder_with_files(
    index: Index, path: str, expected: bool
) -> None:
    await index.put_files(MODEL, COMMIT, [entry(name, number) for number, name in enumerate(TREE)])
    assert await index.has_path(MODEL, COMMIT, path) is expected
    assert not await index.has_path(MODEL, NEXT_COMMIT, path)


# blobs ----------------------------------------------------------------------------------
async def test_blobs_are_added_counted_and_removed(index: Index) -> None:
    assert await index.stored_totals() == (0, 0)
    assert await index.stored_blobs() == []
    await index.add_blob(blob(1), 100)
    await index.add_blob(blob(2, HashAlgorithm.GIT_SHA1), 5_000_000_000)  # above 32 bits
    await index.add_blob(blob(1), 150)  # again: replaced, not counted twice
    assert await index.stored_totals() == (2, 5_000_000_150)
    assert sorted(await index.stored_blobs(), key=str) == sorted(
        [(blob(1), 150), (blob(2, HashAlgorithm.GIT_SHA1), 5_000_000_000)], key=str
    )
    await index.remove_blob(blob(1))
    await index.remove_blob(blob(1))  # again: nothing to do
    await index.remove_blob(blob(7))  # never stored
    assert await index.stored_blobs() == [(blob(2, HashAlgorithm.GIT_SHA1), 5_000_000_000)]
    assert await index.stored_totals() == (1, 5_000_000_000)


async def test_blobs_of_a_repo_are_those_its_files_use_each_once(index: Index) -> None:
    await index.put_files(MODEL, COMMIT, [entry("one", 1), entry("copy-of-one", 1)])
    await index.put_files(MODEL, NEXT_COMMIT, [entry("one", 1), entry("two", 2)])
    await index.put_files(OTHER, COMMIT, [entry("three", 3), entry("one", 1)])
    for number in (1, 3, 4):  # 2 is known by path but not stored
        await index.add_blob(blob(number), number * 10)
    assert await index.stored_blobs(MODEL) == [(blob(1), 10)]
    assert sorted(await index.stored_blobs(OTHER), key=str) == [(blob(1), 10), (blob(3), 30)]
    assert await index.stored_blobs(DATASET) == []
    assert sorted(await index.repo_usage(), key=str) == sorted(
        [(MODEL, 1, 10), (OTHER, 2, 40)], key=str
    )


async def test_repo_usage_lists_the_largest_repo_first(index: Index) -> None:
    await index.put_files(MODEL, COMMIT, [entry("small", 1)])
    await index.put_files(OTHER, COMMIT, [entry("large", 2), entry("small", 1)])
    await index.add_blob(blob(1), 10)
    await index.add_blob(blob(2), 1000)
    assert await index.repo_usage() == [(OTHER, 2, 1010), (MODEL, 1, 10)]


async def test_uses_of_a_blob_name_its_repos_commits_and_paths(index: Index) -> None:
    assert await index.use_of_blob(blob(1)) is None
    await index.put_files(MODEL, COMMIT, [entry("w.bin", 1, 64, "d" * 40), entry("x", 2)])
    use = await index.use_of_blob(blob(1))
    assert use == (MODEL, COMMIT, entry("w.bin", 1, 64, "d" * 40))
    await index.put_files(MODEL, NEXT_COMMIT, [entry("w.bin", 1, 64), entry("copy.bin", 1, 64)])
    await index.put_files(OTHER, COMMIT, [entry("w.bin", 1, 64)])
    uses = await index.uses_of_blob_in(MODEL, blob(1))
    assert sorted(uses, key=str) == sorted(
        [
            (COMMIT, entry("w.bin", 1, 64, "d" * 40)),
            (NEXT_COMMIT, entry("w.bin", 1, 64)),
            (NEXT_COMMIT, entry("copy.bin", 1, 64)),
        ],
        key=str,
    )
    assert len(await index.uses_of_blob_in(MODEL, blob(1), limit=2)) == 2
    assert await index.uses_of_blob_in(DATASET, blob(1)) == []


async def test_a_blob_is_pending_from_begin_until_added_or_abandoned(index: Index) -> None:
    assert await index.pending_blobs() == []
    await index.begin_blob(blob(1), 10)
    await index.begin_blob(blob(2), 20)
    await index.begin_blob(blob(2), 25)  # again: the last size counts
    assert sorted(await index.pending_blobs(), key=str) == [(blob(1), 10), (blob(2), 25)]
    await index.add_blob(blob(1), 10)
    assert await index.pending_blobs() == [(blob(2), 25)]
    await index.abandon_blob(blob(2))
    await index.abandon_blob(blob(2))  # again: nothing to do
    assert await index.pending_blobs() == []
    assert await index.stored_blobs() == [(blob(1), 10)]


# eviction -------------------------------------------------------------------------------
async def test_eviction_starts_with_the_least_recently_read(index: Index) -> None:
    for number, last_access in [(1, 30.0), (2, 10.0), (3, 20.0), (4, 10.0)]:
        await index.add_blob(blob(number), number)
        await index.touch_blob(blob(number), at=last_access)
    # Equal times: by hex digest.
    assert await index.eviction_candidates(10) == [
        (blob(2), 2, 10.0),
        (blob(4), 4, 10.0),
        (blob(3), 3, 20.0),
        (blob(1), 1, 30.0),
    ]
    assert await index.eviction_candidates(1) == [(blob(2), 2, 10.0)]
    assert await index.eviction_candidates(10, accessed_before=20.0) == [
        (blob(2), 2, 10.0),
        (blob(4), 4, 10.0),
    ]
    await index.touch_blob(blob(2), at=40.0)  # read again: now the most recent
    await index.touch_blob(blob(9), at=1.0)  # never stored: nothing happens
    assert [key for key, _, _ in await index.eviction_candidates(10)] == [
        blob(4),
        blob(3),
        blob(1),
        blob(2),
    ]


async def test_a_touch_without_a_time_is_now(index: Index) -> None:
    await index.add_blob(blob(1), 1)
    await index.touch_blob(blob(1), at=5.0)
    before = time.time()
    await index.touch_blob(blob(1))
    [(_, _, last_access)] = await index.eviction_candidates(1)
    assert before <= last_access <= time.time()


async def test_eviction_pages_continue_after_the_last_one(index: Index) -> None:
    # 25 blobs over 5 access times: ties are broken by digest across page ends.
    for number in range(25):
        await index.add_blob(blob(number), number)
        await index.touch_blob(blob(number), at=float(1000 + number % 5) + 0.25)
    expected = await index.eviction_candidates(100)
    assert len(expected) == 25
    pages: list[tuple[BlobKey, int, float]] = []
    after: tuple[float, str] | None = None
    while page := await index.eviction_candidates(7, after=after):
        pages += page
        after = (page[-1][2], page[-1][0].hexdigest)
    assert pages == expected
    assert expected == sorted(expected, key=lambda row: (row[2], row[0].hexdigest))
    later = await index.eviction_candidates(
        100, accessed_before=1003.0, after=(1001.25, blob(11).hexdigest)
    )
    assert [key for key, _, _ in later] == [blob(number) for number in (16, 21, 2, 7, 12, 17, 22)]


async def test_blobs_of_pinned_repos_are_never_eviction_candidates(index: Index) -> None:
    await index.put_files(MODEL, COMMIT, [entry("only-pinned", 1), entry("shared", 2)])
    await index.put_files(OTHER, COMMIT, [entry("shared", 2), entry("only-other", 3)])
    for number in (1, 2, 3, 4):  # 4 belongs to no known file
        await index.add_blob(blob(number), number)
        await index.touch_blob(blob(number), at=float(number))
    await index.pin(MODEL)
    assert [key for key, _, _ in await index.eviction_candidates(10)] == [blob(3), blob(4)]
    await index.unpin(MODEL)
    assert [key for key, _, _ in await index.eviction_candidates(10)] == [
        blob(1),
        blob(2),
        blob(3),
        blob(4),
    ]


# pins and counters ----------------------------------------------------------------------
async def test_pins_are_kept_once_and_lifted(index: Index) -> None:
    assert await index.pinned() == []
    await index.pin(MODEL)
    await index.pin(MODEL)  # again: still one pin
    await index.pin(DATASET)
    assert sorted(await index.pinned(), key=str) == sorted([MODEL, DATASET], key=str)
    assert await index.unpin(MODEL) is True
    assert await index.unpin(MODEL) is False
    assert await index.unpin(OTHER) is False
    assert await index.pinned() == [DATASET]


async def test_counters_add_up_from_zero(index: Index) -> None:
    assert await index.counter("upstream_bytes") == 0
    await index.add_to_counter("upstream_bytes", 5_000_000_000)
    await index.add_to_counter("upstream_bytes", 7)
    await index.add_to_counter("upstream_bytes", -2)
    await index.add_to_counter("other", 1)
    assert await index.counter("upstream_bytes") == 5_000_000_005
    assert await index.counter("other") == 1


# health ---------------------------------------------------------------------------------
async def test_a_fresh_index_has_no_integrity_problem(index: Index) -> None:
    assert await index.integrity_problem() is None
    assert await index.integrity_problem(thorough=True) is None


async def test_closing_twice_is_harmless(index: Index) -> None:
    await index.close()
    await index.close()


# stored sizes and the cluster -------------------------------------------------------------
async def test_the_stored_size_of_a_blob_follows_add_and_remove(index: Index) -> None:
    key = blob(70)
    assert await index.stored_size(key) is None
    await index.add_blob(key, 1234)
    assert await index.stored_size(key) == 1234
    await index.remove_blob(key)
    assert await index.stored_size(key) is None


async def test_live_nodes_are_those_heard_from_lately(index: Index) -> None:
    now = time.time()
    await index.heartbeat("node-b", "http://b:8090", at=now)
    await index.heartbeat("node-a", "http://a:8090", at=now - 1)
    await index.heartbeat("node-c", "http://c:8090", at=now - 60)
    assert await index.live_nodes(within=10) == [
        ("node-a", "http://a:8090"),
        ("node-b", "http://b:8090"),
    ]
    await index.heartbeat("node-c", "http://c:9000")  # back, at another address
    assert ("node-c", "http://c:9000") in await index.live_nodes(within=10)
    await index.remove_node("node-a")
    assert [node for node, _ in await index.live_nodes(within=10)] == ["node-b", "node-c"]


async def test_a_lease_has_one_holder_until_it_expires(index: Index) -> None:
    assert await index.hold_lease("gc", "node-a", seconds=30)
    assert await index.hold_lease("gc", "node-a", seconds=30)  # renewed
    assert not await index.hold_lease("gc", "node-b", seconds=30)
    assert await index.hold_lease("eviction", "node-b", seconds=30)  # another lease
    assert await index.hold_lease("gc", "node-a", seconds=-1)  # renewed as expired
    assert await index.hold_lease("gc", "node-b", seconds=30)  # free: taken over
    assert not await index.hold_lease("gc", "node-a", seconds=30)


async def test_a_shared_answer_is_read_back_until_it_expires(index: Index) -> None:
    assert await index.shared_answer("json|model|a/b") is None
    await index.share_answer("json|model|a/b", '{"kind":"RepoNotFound"}', seconds=30)
    answer = await index.shared_answer("json|model|a/b")
    assert answer is not None
    text, left = answer
    assert text == '{"kind":"RepoNotFound"}'
    assert 0 < left <= 30
    await index.share_answer("json|model|a/b", "granted", seconds=60)  # replaced
    replaced = await index.shared_answer("json|model|a/b")
    assert replaced is not None and replaced[0] == "granted" and replaced[1] > 30
    await index.share_answer("json|model|c/d", "granted", seconds=-1)  # already expired
    assert await index.shared_answer("json|model|c/d") is None
    assert await index.shared_answer("json|model|a/b") is not None  # others kept


def audit_row(number: int, repo: str = "a/b", user: str = "anonymous") -> AuditRow:
    time = f"2026-12-02T10:{number:02d}:00.000+00:00"
    return AuditRow(time, repo, user, f'{{"n":{number}}}')


async def test_audit_records_are_read_in_order_filtered_and_trimmed(index: Index) -> None:
    rows = [
        audit_row(n, "a/b" if n % 2 else "c/d", "abc123" if n < 5 else "def456") for n in range(10)
    ]
    await index.add_audit_records(rows[:4], keep=100)
    await index.add_audit_records(rows[4:], keep=100)
    everything = await index.audit_records(0, 100, AuditFilter())
    assert [line for _, line in everything] == [row.line for row in rows]
    first_page = await index.audit_records(0, 3, AuditFilter())
    second_page = await index.audit_records(first_page[-1][0], 3, AuditFilter())
    assert [line for _, line in first_page + second_page] == [row.line for row in rows[:6]]
    since = AuditFilter(since=rows[6].time)
    assert [line for _, line in await index.audit_records(0, 100, since)] == [
        row.line for row in rows[6:]
    ]
    of_repo = AuditFilter(repo="c/d", user_prefix="abc")
    assert [line for _, line in await index.audit_records(0, 100, of_repo)] == [
        rows[0].line,
        rows[2].line,
        rows[4].line,
    ]
    assert await index.recent_audit_records(2) == [rows[9].line, rows[8].line]
    await index.add_audit_records([audit_row(10)], keep=3)  # trimmed to the newest 3
    assert await index.recent_audit_records(100) == [audit_row(10).line, rows[9].line, rows[8].line]


async def test_requests_count_asks_and_keep_the_decision(index: Index) -> None:
    assert await index.repo_requests() == []
    first = await index.record_request(MODEL, "main", "abc12345")
    assert (first.status, first.times, first.requester) == (RequestStatus.PENDING, 1, "abc12345")
    again = await index.record_request(MODEL, "v1.0", "127.0.0.1")
    assert (again.number, again.times, again.revision) == (first.number, 2, "v1.0")
    assert again.first_asked == first.first_asked and again.requester == "127.0.0.1"
    default = await index.record_request(MODEL, "", "127.0.0.1")  # the default branch
    assert (default.times, default.revision) == (3, "v1.0")  # the last one named is kept
    other = await index.record_request(OTHER, "main", "anonymous")
    assert other.number > first.number
    approved = await index.decide_request(
        MODEL, RequestStatus.APPROVED, "reviewed", "cli:alice", locked_commit="c" * 40
    )
    assert (approved.number, approved.times, approved.status) == (
        first.number,
        3,
        RequestStatus.APPROVED,
    )
    assert (approved.note, approved.decided_by, approved.locked_commit) == (
        "reviewed",
        "cli:alice",
        "c" * 40,
    )
    assert approved.decided_at is not None
    asked_after = await index.record_request(MODEL, "main", "abc12345")
    assert (asked_after.status, asked_after.times) == (RequestStatus.APPROVED, 4)
    # A repo nobody asked for may be approved (or rejected) outright.
    unasked = RepoRef(RepoType.DATASET, "ns/data")
    rejected = await index.decide_request(unasked, RequestStatus.REJECTED, "licence", "cli:bob")
    assert (rejected.times, rejected.first_asked, rejected.locked_commit) == (0, None, None)
    assert [r.repo for r in await index.repo_requests()] == [MODEL, OTHER, unasked]
    assert [r.repo for r in await index.repo_requests(RequestStatus.PENDING)] == [OTHER]
    assert [r.repo for r in await index.repo_requests(RequestStatus.REJECTED)] == [unasked]


async def test_a_scan_verdict_is_kept_by_blob_and_a_waiver_survives_a_rescan(
    index: Index,
) -> None:
    assert await index.scan_record(blob(90)) is None
    await index.set_scan_verdict(blob(90), "dangerous", ("posix.system", "builtins.eval"))
    record = await index.scan_record(blob(90))
    assert record is not None
    assert (record.verdict, record.findings, record.waived_by) == (
        "dangerous",
        ("posix.system", "builtins.eval"),
        "",
    )
    await index.waive_scan(blob(90), "cli:alice")
    await index.set_scan_verdict(blob(90), "dangerous", ("posix.system",))
    again = await index.scan_record(blob(90))
    assert again is not None and again.waived_by == "cli:alice"
    await index.waive_scan(blob(91), "cli:bob")  # waived before it is ever fetched
    early = await index.scan_record(blob(91))
    assert early is not None and (early.verdict, early.waived_by) == ("unscanned", "cli:bob")


async def test_forgetting_a_repo_returns_only_the_blobs_no_other_repo_uses(index: Index) -> None:
    await index.put_files(MODEL, COMMIT, [entry("own", 1), entry("shared", 2)], complete=True)
    await index.put_files(OTHER, COMMIT, [entry("shared", 2), entry("theirs", 3)])
    for number in (1, 2, 3):
        await index.add_blob(blob(number), number * 100)
    await index.set_ref(MODEL, "main", COMMIT)
    await index.set_visibility(MODEL, Visibility.PUBLIC)
    await index.put_document(MODEL, COMMIT, "info", "", '{"sha": "a"}')
    await index.pin(MODEL)
    await index.record_request(MODEL, "main", "anonymous")
    assert await index.forget_repo(MODEL) == [(blob(1), 100)]
    assert await index.file(MODEL, COMMIT, "own") is None
    assert not await index.is_listed(MODEL, COMMIT)
    assert await index.ref(MODEL, "main") is None
    assert await index.visibility(MODEL) is None
    assert await index.document(MODEL, COMMIT, "info", "") is None
    assert await index.pinned() == []
    assert await index.file(OTHER, COMMIT, "shared") is not None  # the other repo keeps it
    assert [request.repo for request in await index.repo_requests()] == [MODEL]  # kept
    assert await index.forget_repo(MODEL) == []  # nothing left
