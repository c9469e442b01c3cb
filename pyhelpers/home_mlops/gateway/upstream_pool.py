"""Keep-alive HTTP/1.1 connections to the model server on loopback: a small pool, no general client.

httpcore's pool checks every idle connection's socket on every request and walks all
requests and connections to assign one (py-spy: 64% of the gateway's samples at 16
connections, most of it there). The hop needs much less: one known server, POST and
GET with a body we made, answers parsed by httptools (uvicorn's own parser, already in
the image). A connection goes back to the pool only after a complete answer that
keeps it alive; an idle one older than ``keepalive`` seconds is closed instead of
reused (below the server's own keep-alive timeout).
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from urllib.parse import urlsplit

import httptools


class UpstreamTimeout(Exception):
    """No connection or no complete answer in time."""


class UpstreamUnreachable(Exception):
    """Could not connect, or the connection broke."""


class _Answer:
    """httptools callbacks: the status, the headers, the body."""

    __slots__ = ("status", "headers", "chunks", "done")

    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[bytes, bytes] = {}
        self.chunks: list[bytes] = []
        self.done = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        self.done = True


class _Connection:
    __slots__ = ("reader", "writer", "last_used")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.last_used = time.monotonic()

    def close(self) -> None:
        self.writer.close()

    async def exchange(self, request: bytes) -> tuple[int, dict[bytes, bytes], bytes, bool]:
        """Send one request, read its whole answer: status, headers, body, whether to keep the connection."""
        self.writer.write(request)
        answer = _Answer()
        parser = httptools.HttpResponseParser(answer)
        while not answer.done:
            data = await self.reader.read(65536)
            if not data:
                raise UpstreamUnreachable("the model server closed the connection")
            try:
                parser.feed_data(data)
            except httptools.HttpParserError as exc:
                raise UpstreamUnreachable(f"a malformed answer ({exc})") from None
        return parser.get_status_code(), answer.headers, b"".join(answer.chunks), parser.should_keep_alive()


class UpstreamPool:
    def __init__(self, base_url: str, max_idle: int, keepalive: float, connect_timeout: float):
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"the model server URL {base_url!r} should be http://host:port")
        self.host, self.port = parts.hostname, parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self.host_header = parts.netloc.encode("latin-1")
        self.max_idle, self.keepalive, self.connect_timeout = max_idle, keepalive, connect_timeout
        self._idle: deque[_Connection] = deque()

    def _request(self, method: str, path: str, body: bytes | None) -> bytes:
        head = f"{method} {self.prefix}{path} HTTP/1.1\r\n".encode("latin-1") + b"host: " + self.host_header + b"\r\n"
        if body is None:
            return head + b"accept: application/json\r\n\r\n"
        return (head + b"content-type: application/json\r\naccept: application/json\r\ncontent-length: "
                + str(len(body)).encode() + b"\r\n\r\n" + body)

    async def _connect(self) -> _Connection:
        try:
            async with asyncio.timeout(self.connect_timeout):
                reader, writer = await asyncio.open_connection(self.host, self.port)
        except TimeoutError:
            raise UpstreamTimeout(f"no connection within {self.connect_timeout:g} s") from None
        except OSError as exc:
            raise UpstreamUnreachable(type(exc).__name__) from None
        return _Connection(reader, writer)

    def _reuse(self) -> _Connection | None:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()  # the most recently used: the least likely to have been closed
            if now - conn.last_used < self.keepalive and not conn.reader.at_eof() and not conn.writer.is_closing():
                return conn
            conn.close()
        return None

    async def send(self, method: str, path: str, body: bytes | None, timeout: float) -> tuple[int, dict[bytes, bytes], bytes]:
        """One request; UpstreamTimeout / UpstreamUnreachable when it cannot be answered."""
        request = self._request(method, path, body)
        conn = self._reuse()
        reused = conn is not None
        if conn is None:
            conn = await self._connect()
        try:
            async with asyncio.timeout(timeout):
                try:
                    status, headers, content, keep = await conn.exchange(request)
                except (UpstreamUnreachable, ConnectionError) as exc:
                    conn.close()
                    if not reused:
                        raise UpstreamUnreachable(str(exc) or type(exc).__name__) from None
                    # a pooled connection the server had just closed: once more on a fresh one
                    # (a prediction is a pure function, so this is safe)
                    conn = await self._connect()
                    status, headers, content, keep = await conn.exchange(request)
        except TimeoutError:
            conn.close()
            raise UpstreamTimeout(f"no answer within {timeout:g} s") from None
        except ConnectionError as exc:
            conn.close()
            raise UpstreamUnreachable(type(exc).__name__) from None
        except BaseException:
            conn.close()  # cancelled (the client left) or broken: never reuse a half-read connection
            raise
        if keep and len(self._idle) < self.max_idle:
            conn.last_used = time.monotonic()
            self._idle.append(conn)
        else:
            conn.close()
        return status, headers, content

    async def aclose(self) -> None:
        while self._idle:
            self._idle.pop().close()
