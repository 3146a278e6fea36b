"""A fault-injecting HTTP relay for loopback tests: it sits in front of a real server and breaks a
chosen share of the requests on purpose.

Why at the TCP level and not as an ASGI app: a web framework always answers something, while real
networks also drop connections mid-request and lose answers the server already computed. Faults:

* ``reset``: the connection is closed before the request reaches the server;
* ``503``: an HTTP 503 answer without reaching the server (an overloaded gateway);
* ``lost``: the request is forwarded and computed, then the connection is cut before the answer
  is relayed (the client must retry work the server already did).

The decision is drawn from a seeded RNG per request, so a test can state the fault rate; with
``fault_rate=0.2`` about one request in five fails. HTTP/1.1 with ``Content-Length`` bodies and
keep-alive, which is what httpx and the openai client send. Binds 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter
from collections.abc import Sequence

import httpx

from ttscale.serve.common import free_port

__all__ = ["FAULT_KINDS", "FaultyRelay"]

FAULT_KINDS = ("reset", "503", "lost")
_HOP = {"connection", "keep-alive", "transfer-encoding", "host", "content-length",
        "proxy-connection", "te", "upgrade", "content-encoding"}


class FaultyRelay:
    """Relay ``upstream`` (``http://host:port``) on ``url``, failing ``fault_rate`` of requests."""

    def __init__(self, upstream: str, fault_rate: float = 0.2, seed: int = 0,
                 kinds: Sequence[str] = FAULT_KINDS, host: str = "127.0.0.1",
                 port: int | None = None) -> None:
        if not 0 <= fault_rate <= 1:
            raise ValueError(f"fault_rate must be in [0, 1], got {fault_rate}")
        bad = [k for k in kinds if k not in FAULT_KINDS]
        if bad or not kinds:
            raise ValueError(f"unknown fault kinds {bad}; choose from {', '.join(FAULT_KINDS)}")
        self.upstream = upstream.rstrip("/")
        self.fault_rate = fault_rate
        self.kinds = tuple(kinds)
        self.host = host
        self.port = port or free_port(host)
        self.stats: Counter[str] = Counter()
        self._rng = random.Random(seed)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._client: httpx.AsyncClient | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def faults(self) -> int:
        return sum(self.stats[k] for k in self.kinds)

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> FaultyRelay:
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        error: list[BaseException] = []

        async def boot() -> None:
            self._client = httpx.AsyncClient(base_url=self.upstream, timeout=600)
            self._server = await asyncio.start_server(self._handle, self.host, self.port)

        def main() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(boot())
            except BaseException as e:  # noqa: BLE001 - reported to the starting thread
                error.append(e)
                ready.set()
                return
            ready.set()
            loop.run_forever()

        self._loop = loop
        self._thread = threading.Thread(target=main, name=f"relay:{self.port}", daemon=True)
        self._thread.start()
        ready.wait()
        if error:
            raise RuntimeError(f"fault relay on {self.url} failed to start: {error[0]}")
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            if self._client is not None:
                await self._client.aclose()

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._loop = None

    def __enter__(self) -> FaultyRelay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- one connection ---------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                        ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
                self.stats["requests"] += 1
                fault = self._rng.choice(self.kinds) \
                    if self._rng.random() < self.fault_rate else None
                if fault is not None:
                    self.stats[fault] += 1
                if fault == "reset":
                    writer.transport.abort()
                    return
                if fault == "503":
                    payload = b'{"error": {"message": "injected fault", "type": "server_error"}}'
                    writer.write(b"HTTP/1.1 503 Service Unavailable\r\n"
                                 b"Content-Type: application/json\r\n"
                                 b"Content-Length: " + str(len(payload)).encode() + b"\r\n"
                                 b"Connection: close\r\n\r\n" + payload)
                    await writer.drain()
                    writer.close()
                    return
                fwd = {k: v for k, v in headers.items() if k not in _HOP}
                assert self._client is not None
                resp = await self._client.request(method, path, content=body, headers=fwd)
                if fault == "lost":
                    writer.transport.abort()
                    return
                self.stats["forwarded"] += 1
                out = [f"HTTP/1.1 {resp.status_code} {resp.reason_phrase}".encode()]
                for k, v in resp.headers.items():
                    if k.lower() not in _HOP:
                        out.append(f"{k}: {v}".encode("latin-1"))
                out.append(f"Content-Length: {len(resp.content)}".encode())
                writer.write(b"\r\n".join(out) + b"\r\n\r\n" + resp.content)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            if not writer.is_closing():
                writer.close()
