"""What ttscale's HTTP servers share: OpenAI-style errors, API keys, bounded JSON bodies, and a
uvicorn server that runs in a background thread (tests and benches start real servers on
loopback and stop them again within the test).

Errors are always ``{"error": {"message", "type", "code"}}`` with a one-line message: clients
(the official ``openai`` package included) show that message, and nothing about the server's
internals (no stack trace, no file paths) ever reaches them.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import h11
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from uvicorn.protocols.http.h11_impl import H11Protocol

M = TypeVar("M", bound=BaseModel)

log = logging.getLogger("ttscale.serve")

__all__ = ["ApiError", "GuardedH11Protocol", "ServerThread", "check_api_key", "check_model",
           "error_response", "free_port", "install_error_handlers", "is_loopback", "read_json",
           "read_secret", "server_keys", "uvicorn_config", "validate"]

#: seconds a connection may take to send its request line and headers (slow or silent clients
#: would otherwise hold a connection open forever: uvicorn has no header timeout of its own)
HEADER_TIMEOUT_S = 10.0
#: seconds a client may take to send the body once its headers are in
BODY_TIMEOUT_S = 30.0

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 408: "invalid_request_error", 413: "invalid_request_error",
          422: "invalid_request_error",
          429: "rate_limit_error", 502: "upstream_error", 503: "server_error",
          504: "upstream_error"}


class ApiError(Exception):
    """An error answer with an HTTP status and a one-line message for the client."""

    def __init__(self, status: int, message: str, code: str | None = None,
                 param: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param
        self.headers = headers


def _printable(text: str) -> str:
    """One line, valid UTF-8 (a lone surrogate from the client's JSON cannot be encoded)."""
    line = " ".join(str(text).split())[:500]
    return line.encode("utf-8", "backslashreplace").decode("utf-8")


def error_response(status: int, message: str, code: str | None = None,
                   param: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"message": _printable(message),
                      "type": _TYPES.get(status, "server_error" if status >= 500
                                         else "invalid_request_error"),
                      "param": _printable(param) if param is not None else None, "code": code}}
    headers = dict(headers or {})
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(body, status_code=status, headers=headers or None)


def install_error_handlers(app: FastAPI) -> None:
    """Every failure becomes an OpenAI-style JSON error; unexpected ones are logged here and
    answered with a generic 500 (the traceback stays in the server log)."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.code, exc.param, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        msg = exc.detail if isinstance(exc.detail, str) else "request failed"
        return error_response(exc.status_code, msg)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(400, "invalid request")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, "internal server error (see the server log)")


def check_model(requested: str | None, served: str) -> None:
    """Raise 404 when a request names a model other than the one served (no name: fine)."""
    if requested is not None and requested != served:
        raise ApiError(404, f"model {requested!r} is not served here; this server serves "
                       f"{served!r}", "model_not_found", "model")


def check_api_key(request: Request, keys: Iterable[str] | None) -> None:
    """Raise 401 unless the request carries one of ``keys`` (``None``: auth disabled).

    Accepts ``Authorization: Bearer KEY`` (what the openai client sends) or ``api-key: KEY``.
    Keys are compared in constant time."""
    if keys is None:
        return
    auth = request.headers.get("authorization", "")
    given = auth[7:].strip() if auth[:7].lower() == "bearer " else \
        request.headers.get("api-key", "").strip()
    if not given:
        raise ApiError(401, "missing API key: send 'Authorization: Bearer <key>'",
                       "missing_api_key")
    if not any(hmac.compare_digest(given.encode(), k.encode()) for k in keys):
        raise ApiError(401, "invalid API key", "invalid_api_key")


async def read_json(request: Request, max_bytes: int,
                    timeout_s: float = BODY_TIMEOUT_S) -> dict[str, Any]:
    """The request's JSON object, refusing bodies over ``max_bytes`` before reading them all,
    bodies that take longer than ``timeout_s`` to arrive (408), and JSON that Python's parser
    cannot hold (nesting deeper than the recursion limit, integers of thousands of digits)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > max_bytes:
                raise ApiError(413, f"request body of {int(declared)} bytes exceeds the limit "
                               f"of {max_bytes} bytes", "request_too_large")
        except ValueError:
            raise ApiError(400, "invalid Content-Length header") from None
    chunks, size = [], 0
    try:
        with anyio.fail_after(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > max_bytes:
                    raise ApiError(413, f"request body exceeds the limit of {max_bytes} bytes",
                                   "request_too_large")
                chunks.append(chunk)
    except TimeoutError:
        raise ApiError(408, f"the request body did not arrive within {timeout_s:g} s",
                       "request_timeout") from None
    raw = b"".join(chunks)
    if not raw.strip():
        raise ApiError(400, "empty request body: send a JSON object", "invalid_json")
    try:
        data = json.loads(raw)
    except UnicodeDecodeError:
        raise ApiError(400, "request body is not UTF-8 JSON", "invalid_json") from None
    except json.JSONDecodeError as e:
        raise ApiError(400, f"malformed JSON at line {e.lineno} column {e.colno}: {e.msg}",
                       "invalid_json") from None
    except RecursionError:
        raise ApiError(400, "JSON nested too deeply", "invalid_json") from None
    except ValueError as e:  # e.g. an integer beyond Python's digit limit
        raise ApiError(400, f"unreadable JSON: {e}", "invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, f"expected a JSON object, got {type(data).__name__}", "invalid_json")
    if _SURROGATE_ESCAPE.search(raw):  # paired escapes decode to one character; lone ones don't
        try:
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ApiError(400, "the JSON holds a lone surrogate escape (\\ud800-\\udfff), "
                           "which is not text", "invalid_json") from None
    return data


_SURROGATE_ESCAPE = re.compile(rb"\\[uU][dD][89a-fA-F]")


def validate(model: type[M], data: dict[str, Any]) -> M:
    """``data`` as a pydantic ``model``; the first problem becomes a 400 naming the field."""
    try:
        return model.model_validate(data)
    except RecursionError:
        raise ApiError(400, "request nested too deeply", "invalid_request") from None
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"]) or "body"
        msg = str(err["msg"]).removeprefix("Value error, ")
        more = f" (and {len(e.errors()) - 1} more problem(s))" if len(e.errors()) > 1 else ""
        raise ApiError(400, f"field '{loc}': {msg}{more}", "invalid_request",
                       param=loc) from None


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free right now on ``host`` (for servers started by tests and benches)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class ServerThread:
    """A uvicorn server for ``app`` in a daemon thread: ``start()`` returns once it accepts
    connections, ``stop()`` shuts it down. Binds 127.0.0.1 by default."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int | None = None,
                 log_level: str = "warning", header_timeout_s: float = HEADER_TIMEOUT_S) -> None:
        import uvicorn

        self.host = host
        self.port = port or free_port(host)
        config = uvicorn.Config(app, **uvicorn_config(host, self.port, log_level,
                                                      header_timeout_s), lifespan="off")
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, name=f"uvicorn:{self.port}",
                                        daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 20.0) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"server on {self.url} failed to start")
            if time.monotonic() > deadline:
                raise RuntimeError(f"server on {self.url} did not start in {timeout_s} s")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---- connections that never finish their headers ---------------------------------------------


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header timeout: a connection that opens and sends nothing,
    or only part of its request line and headers, is closed ``header_timeout_s`` after it
    started waiting for them (the deadline is not reset by each trickled byte, so a slowloris
    client cannot keep it open). uvicorn's own ``timeout_keep_alive`` only starts after a
    response, so without this a silent connection stays open indefinitely."""

    header_timeout_s: float = HEADER_TIMEOUT_S

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE:
            self._arm_header_timer()
        elif self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s,
                                                      self._header_timeout)

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            log.info("closing a connection that sent no complete request headers in %g s",
                     self.header_timeout_s)
            self.transport.close()


def uvicorn_config(host: str, port: int, log_level: str = "warning",
                   header_timeout_s: float = HEADER_TIMEOUT_S) -> dict[str, Any]:
    """uvicorn settings every ttscale server uses: the guarded h11 protocol, no access log,
    idle keep-alive connections closed after 5 s."""
    protocol = type("GuardedH11", (GuardedH11Protocol,), {"header_timeout_s": header_timeout_s})
    return {"host": host, "port": port, "log_level": log_level, "access_log": False,
            "http": protocol, "timeout_keep_alive": 5}


# ---- API keys ------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_secret(path: str | Path, what: str) -> str:
    """The first line of a key file (so keys stay out of ``ps`` and shell history)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ValueError(f"{what}: cannot read key file {str(path)!r}: {e.strerror}") from None
    key = text.strip().splitlines()[0].strip() if text.strip() else ""
    if not key:
        raise ValueError(f"{what}: key file {str(path)!r} is empty")
    return key


def secret(value: str | None, file: str | None, env: str, what: str) -> str | None:
    """A backend key from, in order: the command-line value, a file, the environment."""
    if value and file:
        raise ValueError(f"{what}: give the key or a key file, not both")
    if file:
        return read_secret(file, what)
    return value or os.environ.get(env) or None


def server_keys(what: str, host: str, keys: list[str] | None = None,
                key_file: str | None = None, no_auth: bool = False, insecure: bool = False,
                required_on_loopback: bool = True) -> list[str] | None:
    """The keys a server accepts: ``--api-key`` values, ``--api-key-file``, ``TTSCALE_API_KEY``.

    ``None`` (no auth) is allowed only when asked for: ``no_auth`` on loopback, or
    ``insecure`` (``--insecure-no-auth``) anywhere. A server bound beyond loopback without a key
    is refused: anyone who can reach it could spend its compute. ``required_on_loopback=False``
    (the backend servers) runs open on loopback with a warning instead.
    """
    found = [k for k in (keys or []) if k]
    if key_file:
        found.append(read_secret(key_file, what))
    env = os.environ.get("TTSCALE_API_KEY")
    if env:
        found.append(env.strip())
    if no_auth or insecure:
        if found and not insecure:
            raise ValueError(f"{what}: --no-auth and an API key (argument, file or "
                             "TTSCALE_API_KEY) were both given; choose one")
        if found:
            raise ValueError(f"{what}: --insecure-no-auth and an API key were both given; "
                             "choose one")
        if not is_loopback(host) and not insecure:
            raise ValueError(f"{what}: --no-auth on {host} would let anyone on the network use "
                             "this server; set TTSCALE_API_KEY or --api-key-file, or pass "
                             "--insecure-no-auth if you really mean it")
        if not is_loopback(host):
            log.warning("%s listens on %s WITHOUT an API key (--insecure-no-auth)", what, host)
        return None
    if found:
        return found
    if not is_loopback(host):
        raise ValueError(f"{what} on {host} needs an API key: set TTSCALE_API_KEY or give "
                         "--api-key-file FILE (or --insecure-no-auth)")
    if required_on_loopback:
        raise ValueError(f"{what} needs an API key: set TTSCALE_API_KEY, give --api-key-file "
                         "FILE or --api-key KEY (or --no-auth on a trusted machine)")
    log.warning("%s runs without an API key on %s (loopback only); set TTSCALE_API_KEY or "
                "--api-key-file to require one", what, host)
    return None
