"""``/api/follow`` against the real stack: is-web pushes the newest frame as Server-Sent Events
while frames appear, tabs of one session share one long-poll, refusals come in the server's
words, and streams are capped."""

from __future__ import annotations

import base64
import io
import itertools
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from isweb.follow import WAIT_S
from procmgr.__main__ import dev_user
from pyis_common.config import WebConfig
from tests.conftest import CBF
from tests.support.detector import write_frame
from tests.support.following import newest_answered, parked, wait_for
from tests.support.website import web_site

_dirs = itertools.count(1)
READ_TIMEOUT_S = WAIT_S + 30  # a ping comes every few seconds; a frame within a render


@pytest.fixture(scope="module")
def site(testdata: Path):
    with web_site(testdata) as s:
        yield s


class Stream:
    """One tab's ``/api/follow`` stream, read event by event."""

    def __init__(self, site, pid: str | None = None, **query: Any) -> None:
        url = f"{site.url}/api/follow?{urllib.parse.urlencode(query)}"
        req = urllib.request.Request(url, headers={"Cookie": f"pyis_session={pid or site.pid}"})
        self.response = urllib.request.urlopen(req, timeout=READ_TIMEOUT_S)

    def next(self) -> tuple[str, dict]:
        event, data = "message", []
        while True:
            line = self.response.readline()
            if not line:
                raise AssertionError("the stream ended")
            text = line.decode().rstrip("\r\n")
            if not text:
                if data:
                    return event, json.loads("\n".join(data))
                continue
            name, _, value = text.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)

    def frame(self, fn: str) -> dict:
        """The next frame event, skipping retries; it must show ``fn``."""
        while True:
            event, data = self.next()
            if event == "frame":
                assert data["fn"] == fn, data["fn"]
                return data
            assert event == "retry", (event, data)

    def close(self) -> None:
        self.response.close()


def live_dir(site) -> Path:
    folder = site.data / f"live_{os.getpid()}_{next(_dirs)}"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    return folder


def test_frames_are_pushed_as_they_appear(site, testdata):
    folder = live_dir(site)
    before = parked(site)
    stream = Stream(site, fn=folder.name, xsize=256)
    try:
        wait_for(lambda: parked(site) > before, "the long-poll parked at the worker")
        write_frame(testdata / CBF, folder / "f_0001.cbf", rename=True)
        first = stream.frame(f"{folder.name}/f_0001.cbf")
        picture = Image.open(io.BytesIO(base64.b64decode(first["jpeg"])))
        assert picture.format == "JPEG" and picture.width == 256
        assert first["age_ms"] >= 0 and first["frame"] == 1
        assert "bval_used" in first["job"] and first["meta"]["x_pixels_in_detector"] > 0
        write_frame(testdata / CBF, folder / "f_0002.cbf")  # write then close
        second = stream.frame(f"{folder.name}/f_0002.cbf")
        assert second["seq"] > first["seq"]
        with urllib.request.urlopen(  # the viewer's own calls are not held up by the poll
            urllib.request.Request(
                f"{site.url}/api/meta?fn={folder.name}/f_0002.cbf",
                headers={"Cookie": f"pyis_session={site.pid}"},
            ),
            timeout=30,
        ) as r:
            assert r.status == 200
    finally:
        stream.close()


def test_two_tabs_of_a_session_share_one_long_poll(site, testdata):
    folder = live_dir(site)
    before, answered = parked(site), newest_answered(site)
    tabs = [Stream(site, fn=folder.name, xsize=128)]
    try:
        wait_for(lambda: parked(site) > before, "the first tab's long-poll parked")
        tabs.append(Stream(site, fn=folder.name, xsize=128))
        write_frame(testdata / CBF, folder / "g_0001.cbf", rename=True)
        seqs = {tab.frame(f"{folder.name}/g_0001.cbf")["seq"] for tab in tabs}
        assert len(seqs) == 1
        wait_for(lambda: parked(site) == before + 1, "the shared poll parked again")
        assert newest_answered(site) - answered == 1  # one long-poll answered both tabs
    finally:
        for tab in tabs:
            tab.close()


def test_a_directory_the_session_may_not_read_is_refused_in_the_servers_words(site):
    stream = Stream(site, fn="locked")
    try:
        event, data = stream.next()
        assert event == "refusal" and data["error"] == "forbidden", (event, data)
        assert data["message"]
    finally:
        stream.close()


def test_follow_calls_are_checked_before_a_stream_opens(site):
    for query, pid, status_code, code in (
        ("fn=series", "", 401, "unauthorized"),
        ("fn=series&frame=2", site.pid, 400, "bad_request"),
        ("xsize=100", site.pid, 400, "bad_request"),
    ):
        req = urllib.request.Request(f"{site.url}/api/follow?{query}")
        if pid:
            req.add_header("Cookie", f"pyis_session={pid}")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(req, timeout=30)
        assert refused.value.code == status_code
        assert json.loads(refused.value.read())["error"] == code


def test_streams_are_capped_per_session(site):
    folder = live_dir(site)
    cap = WebConfig().follow_streams_per_session
    pid = site.stack.sign_session(dev_user(), [0])  # a session of its own: no tabs before
    tabs = [Stream(site, pid, fn=folder.name) for _ in range(cap)]
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            Stream(site, pid, fn=folder.name)
        assert refused.value.code == 503
        assert json.loads(refused.value.read())["error"] == "busy"
        tabs.pop().close()
        opened: list[Stream] = []

        def admitted() -> bool:  # the gateway notices the closed tab at its next ping
            try:
                opened.append(Stream(site, pid, fn=folder.name))
            except urllib.error.HTTPError as exc:
                assert exc.code == 503
                return False
            return True

        wait_for(admitted, "a stream admitted once a tab closed")
        tabs += opened
    finally:
        for tab in tabs:
            tab.close()
