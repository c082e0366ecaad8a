"""A redis-py client whose every call has an overall deadline and a cap on the bytes it reads.

redis-py's ``socket_timeout`` bounds each ``recv``: a server that trickles its reply one byte
every 0.2 s keeps a call going for as long as it likes, and a 100 MB bulk string is buffered
whole. The web host's Redis is not ours (a compromised web host controls it), so the socket is
wrapped: before each ``recv``/``send`` the timeout is cut to what is left of the call's
deadline, and the bytes read are counted against the call's budget. Past either the call fails
(``TimeoutError`` / ``ReplyTooLarge``) and the connection is dropped, in time and memory bounded
by the budget whatever the server does. One client per thread (a ``Budget`` is per call).
"""

from __future__ import annotations

import socket
import time
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.retry import Retry


class ReplyTooLarge(redis.exceptions.ConnectionError):
    """The server sent more than the call's byte budget."""


class Budget:
    """The deadline and byte allowance of the current call; set by ``start``."""

    def __init__(self) -> None:
        self.deadline = 0.0
        self.bytes_left = 0

    def start(self, timeout_s: float, max_bytes: int) -> None:
        self.deadline = time.monotonic() + timeout_s
        self.bytes_left = max_bytes


class BudgetedSocket:
    """A socket whose blocking calls obey the budget; everything else passes through."""

    def __init__(self, sock: socket.socket, budget: Budget) -> None:
        self._sock, self._budget = sock, budget
        self._timeout = sock.gettimeout()

    def settimeout(self, timeout: float | None) -> None:
        self._timeout = timeout

    def gettimeout(self) -> float | None:
        return self._timeout

    def _arm(self) -> None:
        left = self._budget.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the call's deadline passed")  # socket.timeout is TimeoutError
        self._sock.settimeout(left if self._timeout is None else min(left, self._timeout))

    def _charge(self, n: int, flags: int) -> int:
        if not flags & socket.MSG_PEEK:
            self._budget.bytes_left -= n
            if self._budget.bytes_left < 0:
                raise ReplyTooLarge("the reply is larger than this call may read")
        return n

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        self._arm()
        data = self._sock.recv(bufsize, flags)
        self._charge(len(data), flags)
        return data

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        self._arm()
        return self._charge(self._sock.recv_into(buffer, nbytes, flags), flags)

    def sendall(self, data: Any, flags: int = 0) -> None:
        self._arm()
        self._sock.sendall(data, flags)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class _Budgeted:
    """Mixed into redis-py's connection classes: their socket is a BudgetedSocket."""

    def __init__(self, *args: Any, budget: Budget, **kwargs: Any) -> None:
        self.budget = budget
        super().__init__(*args, **kwargs)

    def _connect(self) -> Any:
        return BudgetedSocket(super()._connect(), self.budget)  # type: ignore[misc]


class BudgetedConnection(_Budgeted, Connection):
    pass


class BudgetedSSLConnection(_Budgeted, SSLConnection):
    pass


class BudgetedUnixConnection(_Budgeted, UnixDomainSocketConnection):
    pass


CLASSES = {
    "redis": BudgetedConnection,
    "rediss": BudgetedSSLConnection,
    "unix": BudgetedUnixConnection,
}


def client(url: str, budget: Budget, connect_timeout_s: float, **options: Any) -> redis.Redis:
    """One connection, no retries (a retry would start a call the deadline already ended);
    ``options`` go to redis-py (username, password)."""
    scheme = url.partition("://")[0]
    if scheme not in CLASSES:
        raise ValueError(f"unsupported Redis URL scheme {scheme!r}")
    pool = redis.ConnectionPool.from_url(
        url,
        connection_class=CLASSES[scheme],
        budget=budget,
        socket_connect_timeout=connect_timeout_s,
        retry=Retry(NoBackoff(), 0),
        max_connections=1,
        **options,
    )
    return redis.Redis(connection_pool=pool)  # connects at the first call, inside a budget
