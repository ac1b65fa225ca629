"""Governance events posted to a webhook (`[governance] notify_url`).

Each event is one JSON object POSTed to the URL: `{"event": ..., "time": ..., ...}` with
`request created` (a refused repo asked for the first time), `approved`, `rejected`
(an administrator's decision) and `file blocked` (the pickle scanner held a file back).
A webhook that is slow or down never holds up an answer or a command: each post has a
few seconds, runs beside the work that caused it, and a failure is logged, not raised.

All posts share one session of at most CONNECTIONS connections; at most MAX_PENDING
events are in flight or waiting for a connection, and the events beyond are dropped
(counted, and logged once). The URL can be a secret (a Slack webhook): logs name only
its scheme and host.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import aiohttp
from yarl import URL

logger = logging.getLogger(__name__)

POST_SECONDS = 5.0
CONNECTIONS = 4
MAX_PENDING = 100


def url_origin(url: str) -> str:
    """The scheme and host of `url`, the only part of it fit for a log."""
    try:
        parsed = URL(url)
    except (TypeError, ValueError):
        return "(unparsable URL)"
    return f"{parsed.scheme}://{parsed.host}" if parsed.host else "(URL without a host)"


def _described(error: BaseException) -> str:
    """What went wrong, without the URL (some errors' text holds it whole)."""
    reason = getattr(error, "strerror", None)
    return f"{type(error).__name__}: {reason}" if reason else type(error).__name__


class Notifier:
    """Posts events to `url` ("" posts nothing); `close` ends its posts and session."""

    def __init__(
        self,
        url: str,
        post_seconds: float = POST_SECONDS,
        connections: int = CONNECTIONS,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self.url = url
        self.origin = url_origin(url)
        self.dropped = 0
        self._post_seconds = post_seconds
        self._connections = connections
        self._max_pending = max_pending
        self._slots = asyncio.Semaphore(connections)
        self._session: aiohttp.ClientSession | None = None
        self._posting: set[asyncio.Task[None]] = set()
        self._drop_logged = False

    def notify(self, event: str, **fields: Any) -> None:
        """Post `event` in the background (nothing waits for it); dropped when
        MAX_PENDING posts are already in flight or waiting."""
        if not self.url:
            return
        if len(self._posting) >= self._max_pending:
            self._drop(event)
            return
        task = asyncio.get_running_loop().create_task(self.post(event, **fields))
        self._posting.add(task)
        task.add_done_callback(self._posting.discard)

    async def post(self, event: str, **fields: Any) -> None:
        """Post `event` now (once a connection is free); a failure is logged."""
        if not self.url:
            return
        body = {"event": event, "time": datetime.now(UTC).isoformat(), **fields}
        async with self._slots:
            try:
                async with self._open_session().post(self.url, json=body) as response:
                    if response.status >= 400:
                        logger.warning(
                            "webhook %s answered %d to %s", self.origin, response.status, event
                        )
            except (aiohttp.ClientError, TimeoutError, OSError) as error:
                logger.warning(
                    "webhook %s not told of %s: %s", self.origin, event, _described(error)
                )

    def _open_session(self) -> aiohttp.ClientSession:
        """The session all posts share, made at the first post."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connections),
                timeout=aiohttp.ClientTimeout(total=self._post_seconds),
            )
        return self._session

    def _drop(self, event: str) -> None:
        self.dropped += 1
        if not self._drop_logged:
            self._drop_logged = True
            logger.warning(
                "webhook %s: %d events are in flight or waiting; %s and further events "
                "beyond that are dropped",
                self.origin,
                self._max_pending,
                event,
            )

    async def close(self) -> None:
        """Give the posts under way one post's time to finish, drop the rest, and
        close the session."""
        if self._posting:
            _, late = await asyncio.wait(set(self._posting), timeout=self._post_seconds)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
            self.dropped += len(late)
        if self.dropped:
            logger.warning("webhook %s: %d events were dropped", self.origin, self.dropped)
        if self._session is not None:
            await self._session.close()
            self._session = None
