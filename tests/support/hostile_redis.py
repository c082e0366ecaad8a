"""A compromised web host's Redis: a relay in front of a real redis-server that turns hostile on
the connections whose request names a marker (an attacker's session id, ``PUBLISH``).

Everything else is passed through to the real server unchanged, so other users' sessions are
looked up for real while the marked call is attacked:

- ``trickle``: the reply comes one byte every 0.2 s, forever (``socket_timeout`` never fires);
- ``flood``: a 100 MB bulk string, as fast as the socket takes it, whatever was asked.

With no real server behind it (``target_port`` 0) it is a squatter on a dead Redis's port:
every connection is trickled to from its first request on.
"""

from __future__ import annotations

import socket
import threading
import time

TRICKLE_EVERY_S = 0.2
FLOOD_BYTES = 100 << 20


class HostileRedis:
    def __init__(self, markers: dict[bytes, str], port: int = 0) -> None:
        self.markers = markers
        self.target_port = 0  # the real redis-server; 0: none (hostile from the first byte)
        self.listener = socket.create_server(("127.0.0.1", port))  # port: a squatter's
        self.url = f"redis://127.0.0.1:{self.listener.getsockname()[1]}/0"
        self.stopped = threading.Event()
        self.attacking = threading.Semaphore(0)  # released once per attacked call
        self.hanging = 0  # attacked calls whose client is still connected
        self.sent = 0  # bytes of hostile replies sent
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.stopped.set()
        self.listener.close()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = None
        if self.target_port:
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()
        try:
            while data := client.recv(1 << 16):
                mode = next((m for k, m in self.markers.items() if k in data), None)
                if mode is not None or upstream is None:
                    self._attack(client, mode or "trickle")
                    return
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            if upstream is not None:
                upstream.close()
            client.close()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(1 << 16):
                dst.sendall(data)
        except OSError:
            pass

    def _attack(self, client: socket.socket, mode: str) -> None:
        with self._lock:
            self.hanging += 1
        self.attacking.release()
        try:
            if mode == "trickle":
                for byte in b"$100000\r\n" + b"x" * 100000:
                    if self.stopped.is_set():
                        return
                    client.sendall(bytes([byte]))
                    self.sent += 1
                    time.sleep(TRICKLE_EVERY_S)  # the attack itself, not a readiness wait
            else:
                client.sendall(b"$%d\r\n" % FLOOD_BYTES)
                chunk = b"x" * (1 << 16)
                for _ in range(FLOOD_BYTES // len(chunk)):
                    client.sendall(chunk)
                    self.sent += len(chunk)
        except OSError:
            pass  # the victim hung up: what a bounded client does
        finally:
            with self._lock:
                self.hanging -= 1
