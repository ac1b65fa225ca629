"""How healthy each upstream is, as the mirror sees it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class UpstreamStatus:
    """The health of one upstream as the mirror sees it now.

    `state` is `closed` (in use), `open` (skipped after repeated failures until
    `retry_in` seconds pass) or `half-open` (the next request probes it). `active` marks
    the upstream new requests go to first.
    """

    name: str
    url: str
    state: str
    active: bool
    consecutive_failures: int = 0
    last_error: str | None = None
    retry_in: float = 0.0

    @property
    def healthy(self) -> bool:
        """Whether requests may go to this upstream now."""
        return self.state != "open"
