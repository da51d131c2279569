"""Real-database helpers for tests: a private PostgreSQL schema, and a TCP proxy that can 'take the database down'."""
from __future__ import annotations

import socket
import threading
import uuid
from contextlib import contextmanager
from typing import Iterator, List, Optional

from sqlalchemy import create_engine, text

POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


@contextmanager
def postgres_schema(admin_url: str = POSTGRES_ADMIN_URL, host_port: Optional[str] = None) -> Iterator[str]:
    """A fresh schema in the `test` database; yields a URL whose search_path points at it. Dropped afterwards."""
    schema = f"pelvic_test_{uuid.uuid4().hex[:10]}"
    engine = create_engine(admin_url, future=True)
    with engine.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    base = admin_url if host_port is None else admin_url.replace("127.0.0.1:5432", host_port)
    try:
        yield f"{base}?options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a real server. stop() cuts every connection, like a database going away."""

    def __init__(self, target_host: str = "127.0.0.1", target_port: int = 5432) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: List[socket.socket] = []
        self._running = False
        self._thread: Optional[threading.Thread] = None

    def start(self) -> "TcpProxy":
        if self._running:
            return self
        if self._listener.fileno() == -1:  # restarted after stop(): listen on the same port again
            self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._listener.bind(("127.0.0.1", self.port))
        self._listener.listen(16)
        self._running = True
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()
        return self

    def _accept(self) -> None:
        while self._running:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        self._running = False
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() blocked in the other thread
        except OSError:
            pass
        try:
            self._listener.close()
        except OSError:
            pass
        for s in self._sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass
        self._sockets.clear()
