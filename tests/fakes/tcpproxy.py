"""A loopback TCP proxy in front of a real server, to take it "down" or make it "hang" under a
running agent without touching the server itself (which other tests share).

mode "ok": bytes pass both ways; "down": new connections are closed at once and open ones are cut;
"hang": connections are accepted and held, and nothing more is forwarded either way.
"""

from __future__ import annotations

import socket
import threading


class TcpProxy:
    def __init__(self, upstream_host: str, upstream_port: int):
        self.upstream = (upstream_host, upstream_port)
        self.mode = "ok"
        self.accepted = 0  # connections accepted so far
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set_mode(self, mode: str) -> None:
        self.mode = mode
        if mode == "down":
            with self._lock:
                conns, self._conns = self._conns, []
            for c in conns:
                _close(c)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            self.accepted += 1
            if self.mode == "down":
                _close(client)
                continue
            if self.mode == "hang":
                with self._lock:
                    self._conns.append(client)  # held open, never answered
                continue
            try:
                up = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._conns += [client, up]
            for a, b in ((client, up), (up, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data or self.mode != "ok":
                    break
                dst.sendall(data)
        except OSError:
            pass
        if self.mode != "hang":
            _close(src)
            _close(dst)

    def close(self) -> None:
        self._stop.set()
        _close(self._sock)
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            _close(c)


def _close(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass
