"""Governance events posted to a webhook (`[governance] notify_url`).

Each event is one JSON object POSTed to the URL: `{"event": ..., "time": ..., ...}` with
`request created` (a refused repo asked for the first time), `approved`, `rejected`
(an administrator's decision) and `file blocked` (the pickle scanner held a file back).
A webhook that is slow or down never holds up an answer or a command: each post has a
few seconds, runs beside the work that caused it, and a failure is logged, not raised.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import aiohttp

logger = logging.getLogger(__name__)

POST_SECONDS = 5.0


class Notifier:
    """Posts events to `url` ("" posts nothing)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._posting: set[asyncio.Task[None]] = set()

    def notify(self, event: str, **fields: Any) -> None:
        """Post `event` in the background (nothing waits for it)."""
        if not self.url:
            return
        task = asyncio.get_running_loop().create_task(self.post(event, **fields))
        self._posting.add(task)
        task.add_done_callback(self._posting.discard)

    async def post(self, event: str, **fields: Any) -> None:
        """Post `event` now; a failure is logged."""
        if not self.url:
            return
        body = {"event": event, "time": datetime.now(UTC).isoformat(), **fields}
        try:
            timeout = aiohttp.ClientTimeout(total=POST_SECONDS)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(self.url, json=body) as response,
            ):
                if response.status >= 400:
                    logger.warning("webhook answered %d to %s", response.status, event)
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            logger.warning("webhook %s not told of %s: %r", self.url, event, error)

    async def close(self) -> None:
        """Let the posts under way finish (each has POST_SECONDS at most)."""
        if self._posting:
            await asyncio.gather(*self._posting, return_exceptions=True)
