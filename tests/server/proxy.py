"""A TCP relay in front of a server that a test can interrupt for real (standard library only, so
the Blender tests use it too).

    relay = Relay(server_port)          # clients use 127.0.0.1:relay.port
    relay.cut()                         # every open connection is closed; new ones are refused
    relay.restore()                     # connections are accepted again, on the same port
    relay.stall()                       # connections stay open but nothing goes through
    relay.unstall()
    relay.deafen()                      # requests reach the server, its answers are dropped
    relay.undeafen()
    relay.close()

What the client sees is what a dropped Wi-Fi, a restarted reverse proxy or a dead link does: a
reset connection, a refused one, or a socket that stops answering.
"""

from __future__ import annotations

import socket
import threading
import time


class Relay:
    def __init__(self, target_port: int, host: str = "127.0.0.1"):
        self.host, self.target = host, target_port
        self._lock = threading.Lock()
        self._connections: list[tuple[socket.socket, socket.socket]] = []
        self._stalled = threading.Event()
        self._deaf = threading.Event()
        self._closed = False
        self._listener = self._listen(0)
        self.port = self._listener.getsockname()[1]
        self._accepting = threading.Thread(target=self._accept, args=(self._listener,), daemon=True)
        self._accepting.start()
        self.connections_made = 0

    def _listen(self, port: int) -> socket.socket:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, port))
        listener.listen(64)
        return listener

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was closed (cut or close)
            try:
                upstream = socket.create_connection((self.host, self.target), timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._connections.append((client, upstream))
                self.connections_made += 1
            for a, b, answers in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(target=self._pump, args=(a, b, answers), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, answers: bool = False) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                while self._stalled.is_set():
                    time.sleep(0.05)  # hold the bytes: the socket stays open and silent
                if answers and self._deaf.is_set():
                    continue  # the server answered; the answer is lost on the way
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _drop_all(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for pair in connections:
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def _stop_listening(self) -> None:
        # close() alone leaves a socket that a thread waits on in accept() listening (Linux);
        # shutdown() wakes that thread and stops accepting: new connections are refused.
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        self._accepting.join(5)

    def cut(self) -> None:
        """Close every connection and refuse new ones (connection refused) until restore()."""
        self._stop_listening()
        self._drop_all()

    def restore(self) -> None:
        self._listener = self._listen(self.port)
        self._accepting = threading.Thread(target=self._accept, args=(self._listener,), daemon=True)
        self._accepting.start()

    def stall(self) -> None:
        """Connections stay open, and new ones are accepted, but no byte goes through."""
        self._stalled.set()

    def unstall(self) -> None:
        self._stalled.clear()

    def deafen(self) -> None:
        """Requests still reach the server, but its answers never come back (they are dropped)."""
        self._deaf.set()

    def undeafen(self) -> None:
        self._deaf.clear()

    def close(self) -> None:
        self._stalled.clear()
        self._deaf.clear()
        self._stop_listening()
        self._drop_all()
