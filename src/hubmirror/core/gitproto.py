"""Git's smart-HTTP wire format, as far as a caching proxy needs to read it. No I/O.

A request or answer of `git-upload-pack` is a sequence of pkt-lines: four hex digits of
length (which counts themselves) and a payload, or the special `0000` (flush), `0001`
(delim, protocol v2) and `0002` (response end). The mirror reads requests to tell a
fresh clone (wants, no `have` lines: its answer depends only on the wanted commits)
from an incremental fetch, and reads answers to tell a complete pack (its trailing
SHA-1 matches, the stream ended with a flush) from a cut or failed one, which must
never be cached.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass

from hubmirror.core.errors import BadRequestError

FLUSH = b"0000"
DELIM = b"0001"
RESPONSE_END = b"0002"
PACK_SIGNATURE = b"PACK"
PACK_CHECKSUM_SIZE = 20
PACK_HEADER_SIZE = 12
# Request tokens that name the client, not what it asks for: left out of cache keys so
# that clones by different git versions with the same options share an answer.
_IDENTITY_PREFIXES = (b"agent=", b"session-id=")


class PktKind(enum.Enum):
    """What one pkt-line is."""

    DATA = "data"
    FLUSH = "flush"
    DELIM = "delim"
    RESPONSE_END = "response-end"


@dataclass(frozen=True, slots=True)
class PktLine:
    """One pkt-line; `payload` is empty for the special lines."""

    kind: PktKind
    payload: bytes = b""


class PktLineError(BadRequestError):
    """Bytes that are not a well-formed pkt-line stream."""


class PktLineReader:
    """Splits a byte stream, fed in arbitrary pieces, into pkt-lines."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[PktLine]:
        """Add bytes; return every pkt-line they complete. Raises PktLineError."""
        self._buffer += data
        lines: list[PktLine] = []
        while len(self._buffer) >= 4:
            header = bytes(self._buffer[:4])
            try:
                length = int(header, 16)
            except ValueError:
                raise PktLineError(f"malformed pkt-line length {header!r}") from None
            if length < 4:
                special = {0: PktKind.FLUSH, 1: PktKind.DELIM, 2: PktKind.RESPONSE_END}
                if length not in special:
                    raise PktLineError(f"invalid pkt-line length {length}")
                lines.append(PktLine(special[length]))
                del self._buffer[:4]
                continue
            if len(self._buffer) < length:
                break
            lines.append(PktLine(PktKind.DATA, bytes(self._buffer[4:length])))
            del self._buffer[:length]
        return lines

    @property
    def pending(self) -> int:
        """Bytes received that do not form a whole pkt-line yet."""
        return len(self._buffer)


def parse_pkt_lines(data: bytes) -> list[PktLine]:
    """Every pkt-line of a complete stream; raises PktLineError on leftovers or garbage."""
    reader = PktLineReader()
    lines = reader.feed(data)
    if reader.pending:
        raise PktLineError("pkt-line stream ends in the middle of a line")
    return lines


class UploadPackKind(enum.Enum):
    """What an upload-pack request asks for, as far as caching goes."""

    FRESH_FETCH = "fresh-fetch"  # wants and no haves: the answer depends on the wants only
    LS_REFS = "ls-refs"  # protocol v2 ref listing: changes when branches move
    OTHER = "other"  # incremental fetches, shallow updates, unknown commands


@dataclass(frozen=True, slots=True)
class UploadPackRequest:
    """A classified upload-pack request and the key its answer can be cached under."""

    version: int
    kind: UploadPackKind
    wants: tuple[str, ...]
    has_haves: bool
    normalized: bytes

    @property
    def cacheable(self) -> bool:
        """Whether an answer to this request may be stored and replayed."""
        return self.kind is not UploadPackKind.OTHER


def _strip_identity(payload: bytes) -> bytes:
    """A line without its client-identifying tokens (`agent=...` anywhere in it)."""
    tokens = payload.rstrip(b"\n").split(b" ")
    kept = [token for token in tokens if not token.startswith(_IDENTITY_PREFIXES)]
    return b" ".join(kept)


def classify_upload_pack(body: bytes) -> UploadPackRequest:
    """Classify a decoded upload-pack request body. Raises PktLineError when malformed."""
    lines = parse_pkt_lines(body)
    payloads = [line.payload for line in lines if line.kind is PktKind.DATA]
    version = 2 if payloads and payloads[0].startswith(b"command=") else 0
    wants = tuple(
        payload.split(b" ")[1].strip().decode("ascii", "replace")
        for payload in payloads
        if payload.startswith(b"want ") and len(payload.split(b" ")) >= 2
    )
    has_haves = any(payload.startswith(b"have ") for payload in payloads)
    normalized_lines = []
    for line in lines:
        if line.kind is not PktKind.DATA:
            normalized_lines.append(line.kind.value.encode())
            continue
        stripped = _strip_identity(line.payload)
        if stripped:
            normalized_lines.append(b"data:" + stripped)
    normalized = b"\n".join(normalized_lines)
    kind = UploadPackKind.OTHER
    if version == 2:
        command = payloads[0].rstrip(b"\n")
        if command == b"command=ls-refs":
            kind = UploadPackKind.LS_REFS
        elif command == b"command=fetch" and wants and not has_haves:
            kind = UploadPackKind.FRESH_FETCH
    elif wants and not has_haves and _v0_side_band(payloads):
        kind = UploadPackKind.FRESH_FETCH
    return UploadPackRequest(version, kind, wants, has_haves, normalized)


def _v0_side_band(payloads: list[bytes]) -> bool:
    """Protocol v0 sends the pack raw unless the first want asks for side-band framing."""
    first_want = next((payload for payload in payloads if payload.startswith(b"want ")), b"")
    capabilities = first_want.rstrip(b"\n").split(b" ")[2:]
    return b"side-band-64k" in capabilities or b"side-band" in capabilities


class PackAnswerChecker:
    """Follows an upload-pack answer as it streams and tells whether it is complete.

    Complete means: a side-band pack whose header is sane and whose trailing SHA-1
    matches its content, no error band, and a final flush with nothing after it. Only
    such answers are worth caching; anything else (a cut stream, an error, an answer
    without a pack) is passed to the client but not kept.
    """

    def __init__(self, version: int) -> None:
        self._version = version
        self._reader = PktLineReader()
        self._in_pack_section = version == 0
        self._pack_hasher = hashlib.sha1(usedforsecurity=False)
        self._pack_head = bytearray()
        self._pack_tail = b""
        self._pack_bytes = 0
        self._finished = False
        self._failed = False

    def feed(self, data: bytes) -> None:
        """Take the next piece of the answer."""
        if self._failed:
            return
        if self._finished:
            self._failed = bool(data)
            return
        try:
            lines = self._reader.feed(data)
        except PktLineError:
            self._failed = True
            return
        for index, line in enumerate(lines):
            self._take(line)
            if self._ended() and (index < len(lines) - 1 or self._reader.pending):
                self._failed = True  # bytes after the final flush
            if self._failed:
                return

    def _ended(self) -> bool:
        return self._finished

    def _take(self, line: PktLine) -> None:
        if line.kind is PktKind.FLUSH:
            # Flushes before the pack end negotiation sections; the one after it ends all.
            self._finished = self._pack_bytes > 0
            return
        if line.kind is not PktKind.DATA:
            if self._pack_bytes:
                self._failed = True
            return
        payload = line.payload
        if not self._in_pack_section:
            if payload == b"packfile\n":
                self._in_pack_section = True
            return
        band = payload[:1]
        if self._version == 0 and not self._pack_bytes and band not in (b"\x01", b"\x02", b"\x03"):
            return  # v0 negotiation lines (NAK, ACK, shallow) before the side-band pack
        if band == b"\x01":
            self._take_pack(payload[1:])
        elif band != b"\x02":  # band 3 is a fatal error; anything else is garbage
            self._failed = True

    def _take_pack(self, data: bytes) -> None:
        if len(self._pack_head) < PACK_HEADER_SIZE:
            self._pack_head += data[: PACK_HEADER_SIZE - len(self._pack_head)]
        self._pack_bytes += len(data)
        combined = self._pack_tail + data
        self._pack_hasher.update(combined[:-PACK_CHECKSUM_SIZE])
        self._pack_tail = combined[-PACK_CHECKSUM_SIZE:]

    @property
    def complete(self) -> bool:
        """True once the whole answer arrived and its pack verified."""
        if self._failed or not self._finished or self._reader.pending:
            return False
        if self._pack_bytes < PACK_HEADER_SIZE + PACK_CHECKSUM_SIZE:
            return False
        head = bytes(self._pack_head)
        if head[:4] != PACK_SIGNATURE or int.from_bytes(head[4:8], "big") not in (2, 3):
            return False
        return self._pack_hasher.digest() == self._pack_tail


class PktStreamChecker:
    """Tells whether a pkt-line answer (a ref advertisement, an ls-refs answer) is whole:
    every byte belongs to a pkt-line and the last line is a flush."""

    def __init__(self) -> None:
        self._reader = PktLineReader()
        self._last: PktLine | None = None
        self._failed = False

    def feed(self, data: bytes) -> None:
        """Take the next piece of the answer."""
        if self._failed:
            return
        try:
            lines = self._reader.feed(data)
        except PktLineError:
            self._failed = True
            return
        if lines:
            self._last = lines[-1]

    @property
    def complete(self) -> bool:
        """True when the stream parsed and ended with a flush."""
        return (
            not self._failed
            and not self._reader.pending
            and self._last is not None
            and self._last.kind is PktKind.FLUSH
        )
