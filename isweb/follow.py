"""``/api/follow``: the newest frame of a collection pushed to the browser as Server-Sent Events.

The gateway holds ONE ``newest`` long-poll per (session, followed series, rendering fields),
however many tabs of that session follow it: each tab is a subscriber of that :class:`Feed`,
which keeps only the newest frame, so a slow tab skips frames instead of queueing them. The
long-polls have their own upstream pool, so waiting polls never take the slots of the viewer's
other calls; streams are capped per session and overall. A refusal of the image server (a
directory the session may not read, an expired session) is pushed as a ``refusal`` event and
ends the stream; ``busy``/``timeout``/``incomplete`` are retried after a pause.

Events (``data`` is one line of JSON): ``frame`` {seq, fn, frame, age_ms, job, meta, jpeg
(base64)}, ``retry`` {error, message}, ``refusal`` {error, message}.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp_sse import EventSourceResponse, sse_response

from isweb.api import MAX_REPLY_HEADER, build_job, error_response
from isweb.guard import SECURITY_HEADERS
from isweb.upstream import Upstream
from pyis_common.config import WebConfig
from pyis_common.errors import BadRequest, Busy, Internal, PyisError

log = logging.getLogger("isweb")
WAIT_S = 10.0  # each long-poll waits this long at the worker (the wire's cap is 30 s)
RETRYABLE = frozenset({"busy", "timeout", "incomplete", "internal"})
PAUSE_S, MAX_PAUSE_S = 0.5, 5.0  # after a retryable answer, doubling up to the maximum
PING_S = 5.0  # a comment line this often: a closed tab is noticed (and its slot freed) soon
SEND_TIMEOUT_S = 30.0  # a tab that stops reading is cut off


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=True, separators=(",", ":"), allow_nan=False)


@dataclass
class Latest:
    """The newest frame a feed received: its event body without the age, and when it came."""

    seq: int
    age_ms: float
    received: float  # time.monotonic()
    body: str  # JSON object text, starting after its opening brace

    def data(self) -> str:
        """The event's data with the frame's age now (the worker's age plus our hold time)."""
        age = self.age_ms + (time.monotonic() - self.received) * 1000
        return f'{{"age_ms":{age:.1f},{self.body}'


@dataclass
class Feed:
    """One long-poll loop and the tabs that follow it."""

    job: dict[str, Any]
    subscribers: int = 0
    latest: Latest | None = None
    ended: dict[str, str] | None = None  # the refusal that ended it
    retrying: dict[str, str] | None = None  # the retryable answer it waits out now
    version: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def publish(self) -> None:
        self.version += 1
        self.changed.set()
        self.changed = asyncio.Event()


def frame_body(job: dict[str, Any], meta: dict[str, Any], payload: bytes) -> tuple[int, float, str]:
    """(seq, the worker's age of it, event body) of a ``newest`` reply with a frame; a reply
    of another shape raises KeyError/TypeError/ValueError (the image server's fault)."""
    newest = job["newest"]
    seq, age = newest["seq"], newest.get("age_ms", 0.0)
    if type(seq) is not int or not isinstance(age, int | float):
        raise ValueError("bad newest")
    rest = {k: v for k, v in job.items() if k != "newest"}
    meta_text = _dumps(meta)
    if len(meta_text) > MAX_REPLY_HEADER:
        meta_text = '{"truncated":true}'
    picked = {"seq": seq, "fn": str(newest.get("fn", "")), "frame": newest.get("frame", 1)}
    head = _dumps(picked | {"job": rest})[1:-1]
    jpeg = base64.b64encode(payload).decode()
    return seq, float(age), f'{head},"meta":{meta_text},"jpeg":"{jpeg}"}}'


def _unexpected(exc: Exception) -> Internal:
    log.error("follow: a long-poll failed: %s", type(exc).__name__)
    return Internal("the web gateway could not ask the image server; retrying")


class FollowHub:
    """The feeds of every session, and the caps on streams."""

    def __init__(self, cfg: WebConfig) -> None:
        self.per_session = cfg.follow_streams_per_session
        self.max_streams = cfg.follow_max_streams
        self.upstream = Upstream(
            cfg.endpoint, WAIT_S + cfg.request_timeout_s, cfg.follow_max_streams
        )
        self.feeds: dict[tuple[str, str], Feed] = {}
        self.streams: Counter[str] = Counter()  # session -> open streams
        self.open: set[EventSourceResponse] = set()

    def job_of(self, query: dict[str, str], pid: str) -> dict[str, Any]:
        job = build_job("follow", query, pid) | {"wait": WAIT_S}
        if not job.get("fn"):
            raise BadRequest("follow needs 'fn': a directory, a series template or a master")
        return job

    async def stream(self, request: web.Request, pid: str) -> web.StreamResponse:
        """One tab's stream: admitted under the caps, then every newer frame of its feed."""
        try:
            job = self.job_of(dict(request.query), pid)
        except PyisError as exc:
            return error_response(exc)
        if self.streams[pid] >= self.per_session:
            return error_response(Busy(f"this session already follows {self.per_session} streams"))
        if sum(self.streams.values()) >= self.max_streams:
            return error_response(Busy("the web gateway follows too many streams; try later"))
        key = (pid, _dumps(sorted(job.items())))
        feed = self.feeds.get(key)
        if feed is None:
            feed = self.feeds[key] = Feed(job)
            feed.task = asyncio.create_task(self._poll(key, feed))
        feed.subscribers += 1
        self.streams[pid] += 1
        try:
            return await self._send(request, feed)
        finally:
            self._leave(pid, key, feed)

    def _leave(self, pid: str, key: tuple[str, str], feed: Feed) -> None:
        self.streams[pid] -= 1
        if self.streams[pid] <= 0:
            del self.streams[pid]
        feed.subscribers -= 1
        if feed.subscribers <= 0 and self.feeds.get(key) is feed:
            del self.feeds[key]
            if feed.task is not None:
                feed.task.cancel()  # its REQ socket is closed; the worker's wait just passes

    async def _send(self, request: web.Request, feed: Feed) -> web.StreamResponse:
        headers = SECURITY_HEADERS | {"Cache-Control": "no-store"}
        async with sse_response(
            request, headers=headers, ping_interval=PING_S, send_timeout=SEND_TIMEOUT_S
        ) as sse:
            self.open.add(sse)
            closed = asyncio.ensure_future(sse.wait())
            seen = 0
            try:
                while sse.is_connected():
                    if feed.version != seen:
                        seen = feed.version
                        if not await self._event(sse, feed):
                            break
                        continue
                    changed = asyncio.ensure_future(feed.changed.wait())
                    await asyncio.wait({changed, closed}, return_when=asyncio.FIRST_COMPLETED)
                    changed.cancel()
            except (ConnectionResetError, TimeoutError):
                pass  # the tab went away, or stopped reading
            finally:
                closed.cancel()
                self.open.discard(sse)
        return sse

    @staticmethod
    async def _event(sse: EventSourceResponse, feed: Feed) -> bool:
        """Send what changed in ``feed``; False once the stream is over."""
        if feed.ended is not None:
            await sse.send(_dumps(feed.ended), event="refusal")
            return False
        if feed.retrying is not None:
            await sse.send(_dumps(feed.retrying), event="retry")
        elif feed.latest is not None:
            await sse.send(feed.latest.data(), event="frame", id=str(feed.latest.seq))
        return True

    async def _poll(self, key: tuple[str, str], feed: Feed) -> None:
        """The feed's long-poll loop: ask for a frame newer than the last one, publish it."""
        seq, pause = 0, PAUSE_S
        while True:
            try:
                reply = await self.upstream.ask(feed.job | {"seq": seq})
                if reply.job.get("newest") is None:
                    feed.retrying, pause = None, PAUSE_S
                    continue  # nothing new within the wait: ask again
                if reply.payload is None:
                    raise Internal("the image server sent a frame without its JPEG")
                try:
                    seq, age, body = frame_body(reply.job, reply.meta, reply.payload)
                except (KeyError, TypeError, ValueError):
                    raise Internal("the image server sent a malformed newest reply") from None
            except Exception as failure:  # noqa: BLE001 - every failure is answered in the page
                exc = failure if isinstance(failure, PyisError) else _unexpected(failure)
                answer = {"error": exc.code, "message": str(exc)}
                if exc.code not in RETRYABLE:
                    feed.ended = answer
                    feed.publish()
                    if self.feeds.get(key) is feed:
                        del self.feeds[key]  # the next tab to follow asks afresh
                    return
                feed.retrying = answer
                feed.publish()
                await asyncio.sleep(pause)
                pause = min(pause * 2, MAX_PAUSE_S)
                continue
            feed.retrying, pause = None, PAUSE_S
            feed.latest = Latest(seq, age, time.monotonic(), body)
            feed.publish()

    async def shutdown(self) -> None:
        """Before the server waits for its handlers: end every stream and every poll."""
        for sse in list(self.open):
            sse.stop_streaming()
        tasks = [f.task for f in self.feeds.values() if f.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.feeds.clear()

    def close(self) -> None:
        self.upstream.close()
