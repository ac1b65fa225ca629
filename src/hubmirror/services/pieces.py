"""The byte ranges a download's connections fetch, and when to cut one in two.

A `Piece` is the range one upstream connection fetches; its `end` shrinks when another
connection takes over its tail. Two moments split a piece, as aria2c does:

- a reader waits for bytes that the piece's connection reaches only late (a parquet
  footer, the end of a file read with `Range`): a new connection starts at the
  reader's offset, so the reader waits about one round trip plus its own bytes;
- a connection runs out of work while another still has much to fetch: it takes the
  second half, so idle connections help finish the last segments.

A split costs one more upstream request, about the time the download's first answer
took; it is made only where waiting would cost more. Pure logic, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# Splitting off less than this is never worth a request.
MIN_SPLIT_BYTES = 256 * 1024
# A connection's speed is judged after its bytes flowed this long, and a split must
# save at least this much waiting: on a fast link nothing is ever split (a split
# connection's bytes already in flight are wasted).
MEASURE_SECONDS = 0.05
MIN_GAIN_SECONDS = 0.1
# Idle connections split others' work at this granularity.
ALIGNMENT = 64 * 1024


@dataclass(eq=False, slots=True)
class Piece:
    """`[start, end)` of a blob, fetched by one connection once it is taken."""

    start: int
    end: int
    # Where its connection has got to, and since when (and where) bytes flow.
    position: int | None = None
    flowing_since: float | None = None
    flowing_from: int = 0

    def reached(self) -> int:
        """The first offset its connection has not written yet."""
        return self.start if self.position is None else self.position

    def remaining(self) -> int:
        """Bytes still to come for this piece."""
        return max(0, self.end - self.reached())

    def flowing(self, position: int, now: float) -> None:
        """Its connection's bytes start to flow at `position`."""
        self.position, self.flowing_since, self.flowing_from = position, now, position

    def speed(self, now: float) -> float | None:
        """Bytes a second its connection delivers (None until it can be told)."""
        if self.position is None or self.flowing_since is None:
            return None
        elapsed = now - self.flowing_since
        if elapsed < MEASURE_SECONDS:
            return None
        return (self.position - self.flowing_from) / elapsed


def plan_pieces(gaps: Iterable[tuple[int, int]], segment_size: int | None) -> list[Piece]:
    """The missing ranges cut into segments (`segment_size` None: one piece per gap)."""
    if segment_size is None:
        return [Piece(start, end) for start, end in gaps]
    return [
        Piece(offset, min(offset + segment_size, end))
        for start, end in gaps
        for offset in range(start, end, segment_size)
    ]


def _worth_a_request(wait_bytes: int, speed: float | None, request_seconds: float) -> bool:
    """Whether bytes `wait_bytes` away come sooner through a new request (not known
    before the connection's first bytes tell its speed)."""
    if wait_bytes < MIN_SPLIT_BYTES or speed is None:
        return False
    if speed <= 0:
        return True  # stalled
    return wait_bytes / speed > max(2 * request_seconds, MIN_GAIN_SECONDS)


def split_for_reader(piece: Piece, offset: int, now: float, request_seconds: float) -> Piece | None:
    """The tail from `offset` on, cut off for a new connection, when a reader waiting
    at `offset` would otherwise wait longer than a new request takes."""
    if not piece.reached() < offset < piece.end:
        return None
    if not _worth_a_request(offset - piece.reached(), piece.speed(now), request_seconds):
        return None
    tail = Piece(offset, piece.end)
    piece.end = offset
    return tail


def split_for_idle(active: Iterable[Piece], now: float, request_seconds: float) -> Piece | None:
    """The second half of the busiest piece, for a connection with nothing left to do."""
    busiest = max(active, key=Piece.remaining, default=None)
    if busiest is None:
        return None
    half = busiest.remaining() // 2
    if not _worth_a_request(half, busiest.speed(now), request_seconds):
        return None
    middle = -(-(busiest.reached() + half) // ALIGNMENT) * ALIGNMENT
    if middle >= busiest.end:
        return None
    tail = Piece(middle, busiest.end)
    busiest.end = middle
    return tail
