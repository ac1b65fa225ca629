"""Reading git's wire format: pkt-lines, fresh clones vs fetches, complete packs."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubmirror.core.gitproto import (
    PackAnswerChecker,
    PktKind,
    PktLine,
    PktLineError,
    PktLineReader,
    PktStreamChecker,
    UploadPackKind,
    classify_upload_pack,
    parse_pkt_lines,
)

SHA_A = "a" * 40
SHA_B = "b" * 40


def pkt(payload: bytes | str) -> bytes:
    data = payload.encode() if isinstance(payload, str) else payload
    return b"%04x" % (len(data) + 4) + data


def v2_fetch(*arguments: str, agent: str = "git/2.39.5") -> bytes:
    head = pkt("command=fetch\n") + pkt(f"agent={agent}\n") + pkt("object-format=sha1\n")
    return head + b"0001" + b"".join(pkt(f"{argument}\n") for argument in arguments) + b"0000"


def v0_fetch(first_capabilities: str, *lines: str) -> bytes:
    body = pkt(f"want {SHA_A} {first_capabilities}\n") + pkt(f"want {SHA_B}\n") + b"0000"
    return body + b"".join(pkt(f"{line}\n") for line in lines)


def pack(objects_payload: bytes = b"") -> bytes:
    content = b"PACK" + (2).to_bytes(4, "big") + (0).to_bytes(4, "big") + objects_payload
    return content + hashlib.sha1(content, usedforsecurity=False).digest()


def side_band(data: bytes, band: int = 1, size: int = 1000) -> bytes:
    return b"".join(
        pkt(bytes([band]) + data[start : start + size]) for start in range(0, len(data), size)
    )


def v2_answer(pack_bytes: bytes) -> bytes:
    return pkt("packfile\n") + side_band(b"progress\n", band=2) + side_band(pack_bytes) + b"0000"


def v0_answer(pack_bytes: bytes) -> bytes:
    return pkt("NAK\n") + side_band(pack_bytes) + b"0000"


def test_pkt_lines_parse_data_and_special_lines() -> None:
    assert parse_pkt_lines(pkt("hello\n") + b"0000" + b"0001" + b"0002") == [
        PktLine(PktKind.DATA, b"hello\n"),
        PktLine(PktKind.FLUSH),
        PktLine(PktKind.DELIM),
        PktLine(PktKind.RESPONSE_END),
    ]


@pytest.mark.parametrize("data", [b"zzzz", b"0003", b"0009abc", b"00"])
def test_malformed_pkt_lines_are_refused(data: bytes) -> None:
    with pytest.raises(PktLineError):
        parse_pkt_lines(data)


@given(st.lists(st.binary(max_size=50), max_size=8), st.integers(min_value=1, max_value=7))
def test_pkt_line_reader_gives_the_same_lines_whatever_the_pieces(
    payloads: list[bytes], piece: int
) -> None:
    stream = b"".join(pkt(payload) for payload in payloads) + b"0000"
    reader = PktLineReader()
    lines = []
    for start in range(0, len(stream), piece):
        lines += reader.feed(stream[start : start + piece])
    assert lines == parse_pkt_lines(stream)
    assert reader.pending == 0


def test_v2_fetch_without_haves_is_a_fresh_clone() -> None:
    request = classify_upload_pack(v2_fetch("thin-pack", f"want {SHA_A}", f"want {SHA_B}", "done"))
    assert (request.version, request.kind) == (2, UploadPackKind.FRESH_FETCH)
    assert request.wants == (SHA_A, SHA_B)
    assert request.cacheable


def test_v2_fetch_with_haves_is_not_cacheable() -> None:
    request = classify_upload_pack(v2_fetch(f"want {SHA_A}", f"have {SHA_B}", "done"))
    assert request.kind is UploadPackKind.OTHER and request.has_haves
    assert not request.cacheable


def test_v2_ls_refs_is_recognised() -> None:
    body = pkt("command=ls-refs\n") + b"0001" + pkt("peel\n") + pkt("symrefs\n") + b"0000"
    assert classify_upload_pack(body).kind is UploadPackKind.LS_REFS


def test_v0_fresh_clone_needs_side_band_to_be_cached() -> None:
    with_band = classify_upload_pack(v0_fetch("multi_ack side-band-64k ofs-delta", "done"))
    without_band = classify_upload_pack(v0_fetch("multi_ack ofs-delta", "done"))
    with_haves = classify_upload_pack(v0_fetch("side-band-64k", f"have {SHA_B}", "done"))
    assert (with_band.version, with_band.kind) == (0, UploadPackKind.FRESH_FETCH)
    assert without_band.kind is UploadPackKind.OTHER
    assert with_haves.kind is UploadPackKind.OTHER


def test_cache_key_ignores_the_client_agent_but_not_the_wants_or_options() -> None:
    base = classify_upload_pack(v2_fetch(f"want {SHA_A}", "done"))
    other_agent = classify_upload_pack(v2_fetch(f"want {SHA_A}", "done", agent="git/2.45.0"))
    other_want = classify_upload_pack(v2_fetch(f"want {SHA_B}", "done"))
    other_option = classify_upload_pack(v2_fetch("deepen 1", f"want {SHA_A}", "done"))
    assert base.normalized == other_agent.normalized
    assert base.normalized != other_want.normalized
    assert base.normalized != other_option.normalized
    v0_a = classify_upload_pack(v0_fetch("side-band-64k agent=git/2.39.5", "done"))
    v0_b = classify_upload_pack(v0_fetch("side-band-64k agent=git/2.40.0", "done"))
    assert v0_a.normalized == v0_b.normalized


@pytest.mark.parametrize(("version", "answer"), [(2, v2_answer), (0, v0_answer)])
def test_a_whole_side_band_pack_is_complete(version: int, answer: object) -> None:
    assert callable(answer)
    data = answer(pack(b"x" * 5000))
    checker = PackAnswerChecker(version)
    for start in range(0, len(data), 777):
        checker.feed(data[start : start + 777])
    assert checker.complete


def _fed(version: int, data: bytes) -> PackAnswerChecker:
    checker = PackAnswerChecker(version)
    checker.feed(data)
    return checker


def test_cut_corrupt_or_failed_answers_are_not_complete() -> None:
    good = pack(b"y" * 3000)
    corrupt = good[:-1] + bytes([good[-1] ^ 1])
    assert _fed(2, v2_answer(good)).complete
    assert not _fed(2, v2_answer(good)[:-4]).complete  # no final flush
    assert not _fed(2, v2_answer(good)[:-40]).complete  # cut inside the pack
    assert not _fed(2, v2_answer(corrupt)).complete  # trailer mismatch
    assert not _fed(2, v2_answer(good) + pkt("extra")).complete  # bytes after the end
    failed = pkt("packfile\n") + side_band(good) + pkt(b"\x03fatal: out of memory") + b"0000"
    assert not _fed(2, failed).complete
    assert not _fed(2, pkt("acknowledgments\n") + pkt("NAK\n") + b"0000").complete  # no pack
    not_a_pack = b"JUNK" + good[4:]
    assert not _fed(0, v0_answer(not_a_pack)).complete


def test_pkt_stream_checker_wants_a_final_flush() -> None:
    whole = PktStreamChecker()
    whole.feed(pkt("# service=git-upload-pack\n") + b"0000" + pkt("version 2\n") + b"0000")
    cut = PktStreamChecker()
    cut.feed(pkt("# service=git-upload-pack\n") + b"0000" + pkt("version 2\n"))
    garbage = PktStreamChecker()
    garbage.feed(b"<html>")
    assert whole.complete and not cut.complete and not garbage.complete
