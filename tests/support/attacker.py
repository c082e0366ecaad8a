"""Run a redis-py script as a throwaway local account: the attacker really is another user.

The script gets ``url`` (read from stdin, so no secret is on a command line) and ``run``, which
sends one command and records the reply or the error's code word (NOAUTH, NOPERM, ...); the
records come back as JSON.
"""

from __future__ import annotations

import json
import pwd
import subprocess
import sys

PRELUDE = """
import json, sys
import redis
url = sys.stdin.read()
out = []
CODES = {
    "AuthenticationError": "NOAUTH", "NoPermissionError": "NOPERM", "NoScriptError": "NOSCRIPT"
}
def run(client, *args):
    try:
        reply = client.execute_command(*args)
        out.append(["ok", repr(reply)[:200]])
    except redis.exceptions.RedisError as exc:  # redis-py turns the code word into a class
        out.append([CODES.get(type(exc).__name__, type(exc).__name__), str(exc)[:200]])
"""


def run_as(user: str, url: str, body: str) -> list[list[str]]:
    """``body`` runs after PRELUDE as ``user`` (uid and primary gid, no other groups)."""
    pw = pwd.getpwnam(user)
    assert pw.pw_uid != 0
    res = subprocess.run(
        [sys.executable, "-c", PRELUDE + body + "\nprint(json.dumps(out))"],
        input=url,
        capture_output=True,
        text=True,
        user=pw.pw_uid,
        group=pw.pw_gid,
        extra_groups=[],
        cwd="/",
        timeout=60,
        check=False,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout.strip().splitlines()[-1])
