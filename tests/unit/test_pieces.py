"""When a download's pieces are cut in two: for a reader far ahead, for an idle connection."""

from __future__ import annotations

from hubmirror.services.pieces import (
    ALIGNMENT,
    MEASURE_SECONDS,
    MIN_SPLIT_BYTES,
    Piece,
    plan_pieces,
    split_for_idle,
    split_for_reader,
)

MIB = 1024 * 1024


def flowing(start: int, end: int, got: int, seconds: float) -> Piece:
    """A piece whose connection delivered `got` bytes in `seconds` (clock at 100)."""
    piece = Piece(start, end)
    piece.flowing(start, 100.0 - seconds)
    piece.position = start + got
    return piece


def test_plan_cuts_gaps_into_segments_or_keeps_them_whole() -> None:
    segments = plan_pieces([(0, 10), (20, 25)], 4)
    assert [(p.start, p.end) for p in segments] == [(0, 4), (4, 8), (8, 10), (20, 24), (24, 25)]
    assert [(p.start, p.end) for p in plan_pieces([(0, 10)], None)] == [(0, 10)]


def test_a_reader_far_ahead_of_a_slow_connection_gets_the_tail() -> None:
    piece = flowing(0, 8 * MIB, got=2 * MIB, seconds=1.0)  # 2 MiB/s, 6 MiB to go
    tail = split_for_reader(piece, 7 * MIB, now=100.0, request_seconds=0.05)
    assert tail is not None
    assert (tail.start, tail.end, piece.end) == (7 * MIB, 8 * MIB, 7 * MIB)


def test_no_split_when_the_connection_gets_there_sooner_than_a_new_request() -> None:
    fast = flowing(0, 8 * MIB, got=100 * MIB, seconds=0.1)  # 1 GB/s
    assert split_for_reader(fast, 7 * MIB, now=100.0, request_seconds=0.05) is None
    assert fast.end == 8 * MIB
    near = flowing(0, 8 * MIB, got=2 * MIB, seconds=1.0)
    assert split_for_reader(near, 2 * MIB + MIN_SPLIT_BYTES - 1, 100.0, 0.05) is None


def test_no_split_before_the_connection_has_shown_its_speed_or_outside_its_range() -> None:
    waiting = Piece(0, 8 * MIB)
    assert split_for_reader(waiting, 7 * MIB, now=100.0, request_seconds=0.05) is None
    just_started = flowing(0, 8 * MIB, got=64 * 1024, seconds=MEASURE_SECONDS / 2)
    assert split_for_reader(just_started, 7 * MIB, now=100.0, request_seconds=0.05) is None
    piece = flowing(0, 8 * MIB, got=MIB, seconds=1.0)
    assert split_for_reader(piece, 9 * MIB, now=100.0, request_seconds=0.05) is None
    assert split_for_reader(piece, MIB // 2, now=100.0, request_seconds=0.05) is None


def test_an_idle_connection_takes_the_aligned_second_half_of_the_busiest_piece() -> None:
    small = flowing(0, 2 * MIB, got=MIB + MIB // 2, seconds=1.0)
    busy = flowing(8 * MIB, 16 * MIB, got=MIB, seconds=1.0)
    tail = split_for_idle([small, busy], now=100.0, request_seconds=0.05)
    assert tail is not None and tail.end == 16 * MIB
    assert busy.end == tail.start and tail.start % ALIGNMENT == 0
    assert abs(tail.start - (9 * MIB + 7 * MIB // 2)) < ALIGNMENT


def test_an_idle_connection_leaves_small_or_fast_pieces_alone() -> None:
    assert split_for_idle([], now=100.0, request_seconds=0.05) is None
    nearly_done = flowing(0, MIB, got=MIB - MIN_SPLIT_BYTES, seconds=1.0)
    assert split_for_idle([nearly_done], now=100.0, request_seconds=0.05) is None
    fast = flowing(0, 64 * MIB, got=32 * MIB, seconds=0.01)
    assert split_for_idle([fast], now=100.0, request_seconds=0.05) is None
