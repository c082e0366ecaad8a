"""The procmgr's request log line names the file asked for, as data."""

from __future__ import annotations

from procmgr.__main__ import dev_user
from tests.support.client import ask, error_code
from tests.support.devsite import dev_stack


def request_lines(stack) -> list[str]:
    text = (stack.workdir / "procmgr.log").read_text()
    return [ln for ln in text.splitlines() if " INFO procmgr: request " in ln]


def test_the_request_line_names_the_file_and_a_newline_in_it_forges_nothing(testdata):
    with dev_stack(testdata, "request_timeout_s = 30.0") as stack:
        pid = stack.sign_session(dev_user(), [0])
        assert (
            ask(stack.endpoint, {"type": "jpeg", "pid": pid, "fn": "a.cbf", "xsize": 64})[0] == b""
        )
        forged = "gone.cbf\n2026-12-02 00:00:00,000 is-procmgr[1] INFO procmgr: request forged"
        job = {"type": "meta", "pid": pid, "fn": forged, "frame": 2}
        assert error_code(ask(stack.endpoint, job)) == "not_found"
        ask(stack.endpoint, {"pid": "monitor", "type": "status"})
        lines = request_lines(stack)
        assert any("type=jpeg fn='a.cbf' outcome=ok" in ln for ln in lines), lines
        (refused,) = [ln for ln in lines if "type=meta" in ln]
        assert f"fn={forged!r} frame=2 outcome=not_found" in refused
        assert not any(ln.endswith("request forged") for ln in lines)
        assert any("type=status outcome=ok" in ln for ln in lines)  # no file, no fn=
