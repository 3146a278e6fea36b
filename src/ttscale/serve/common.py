"""What ttscale's HTTP servers share: OpenAI-style errors, API keys, bounded JSON bodies, and a
uvicorn server that runs in a background thread (tests and benches start real servers on
loopback and stop them again within the test).

Errors are always ``{"error": {"message", "type", "code"}}`` with a one-line message: clients
(the official ``openai`` package included) show that message, and nothing about the server's
internals (no stack trace, no file paths) ever reaches them.
"""

from __future__ import annotations

import hmac
import json
import logging
import socket
import threading
import time
from collections.abc import Iterable
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

M = TypeVar("M", bound=BaseModel)

log = logging.getLogger("ttscale.serve")

__all__ = ["ApiError", "ServerThread", "check_api_key", "check_model", "error_response",
           "free_port", "install_error_handlers", "read_json", "validate"]

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 413: "invalid_request_error", 422: "invalid_request_error",
          429: "rate_limit_error", 502: "upstream_error", 503: "server_error",
          504: "upstream_error"}


class ApiError(Exception):
    """An error answer with an HTTP status and a one-line message for the client."""

    def __init__(self, status: int, message: str, code: str | None = None,
                 param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param


def error_response(status: int, message: str, code: str | None = None,
                   param: str | None = None) -> JSONResponse:
    body = {"error": {"message": " ".join(str(message).split())[:500],
                      "type": _TYPES.get(status, "server_error" if status >= 500
                                         else "invalid_request_error"),
                      "param": param, "code": code}}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Every failure becomes an OpenAI-style JSON error; unexpected ones are logged here and
    answered with a generic 500 (the traceback stays in the server log)."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.code, exc.param)

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


async def read_json(request: Request, max_bytes: int) -> dict[str, Any]:
    """The request's JSON object, refusing bodies over ``max_bytes`` before reading them all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > max_bytes:
                raise ApiError(413, f"request body of {int(declared)} bytes exceeds the limit "
                               f"of {max_bytes} bytes", "request_too_large")
        except ValueError:
            raise ApiError(400, "invalid Content-Length header") from None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise ApiError(413, f"request body exceeds the limit of {max_bytes} bytes",
                           "request_too_large")
        chunks.append(chunk)
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
    if not isinstance(data, dict):
        raise ApiError(400, f"expected a JSON object, got {type(data).__name__}", "invalid_json")
    return data


def validate(model: type[M], data: dict[str, Any]) -> M:
    """``data`` as a pydantic ``model``; the first problem becomes a 400 naming the field."""
    try:
        return model.model_validate(data)
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
                 log_level: str = "warning") -> None:
        import uvicorn

        self.host = host
        self.port = port or free_port(host)
        config = uvicorn.Config(app, host=host, port=self.port, log_level=log_level,
                                access_log=False, lifespan="off", timeout_keep_alive=30)
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
