"""worker/halves.py: work shared with a helper thread covers everything exactly once, and a
caller never waits for a helper that is not free (it does the work itself)."""

from __future__ import annotations

import subprocess
import sys
import threading

from worker import halves


def _recorder() -> tuple[list[tuple[int, int]], object]:
    seen: list[tuple[int, int]] = []
    lock = threading.Lock()

    def step(lo: int, hi: int) -> int:
        with lock:
            seen.append((lo, hi))
        return hi - lo

    return seen, step


def test_pieces_cover_the_range_exactly_once():
    seen, step = _recorder()
    n = 3 * halves.PIECE_ITEMS + 17
    assert sum(halves.pieces(n, step)) == n
    assert sorted(seen)[0][0] == 0 and sorted(seen)[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(sorted(seen), sorted(seen)[1:], strict=False))
    small_seen, small = _recorder()
    assert halves.pieces(1000, small) == [1000] and small_seen == [(0, 1000)]


def test_a_caller_whose_helpers_are_busy_does_the_work_itself():
    release = threading.Event()
    busy = [halves._helpers().submit(release.wait) for _ in range(halves.HELPERS)]
    try:
        seen, step = _recorder()
        n = 4 * halves.PIECE_ITEMS
        assert sum(halves.pieces(n, step)) == n and len(seen) == 4
        assert halves.both(lambda: "first", lambda: "second") == ("first", "second")
    finally:
        release.set()
        for future in busy:
            future.result()


def test_the_warm_up_starts_no_thread():
    """The zygote forks workers and spares after its warm-up: a thread there would not
    survive the fork, and the helpers are only for big frames."""
    code = (
        "import threading; from worker import warmup; warmup.warm(); "
        "print(threading.active_count())"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split()[-1] == "1"
