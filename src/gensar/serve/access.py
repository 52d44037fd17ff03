"""Who may write, and how much a request may send: the API key of the write endpoints and the body cap.

The key comes from a file (``gensar serve RUN --api-key-file F``), never from the command line, where
``ps`` shows it to every local user; it is never logged. A write endpoint declares
``dependencies=[WRITE_ACCESS]`` and then answers 401 unless the request carries
``Authorization: Bearer KEY`` or ``X-API-Key: KEY``; read endpoints stay open.

``BodyLimit`` is an ASGI middleware, so an oversized body is refused before FastAPI reads or parses
it: a ``Content-Length`` over the cap is answered 413 at once, and a body without one (chunked) is
counted as it streams in and refused as soon as it passes the cap, so memory stays bounded by the
cap whatever a client sends.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gensar.config import require
from gensar.errors import InputError
from gensar.serve.schemas import ErrorBody

DEFAULT_MAX_BODY_BYTES = 1_000_000  # 1 MB: a request body is a few hundred bytes; an event far under 100 kB


@dataclass(frozen=True)
class AccessConfig:
    api_key: str | None = None  # None: writes are open (only sensible on a loopback address)
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    def __post_init__(self) -> None:
        require(self.max_body_bytes >= 1, "max_body_bytes", "must be >= 1")
        require(self.api_key is None or _valid_key(self.api_key), "api_key",
                "must be one line of printable ASCII characters without spaces")

    def __repr__(self) -> str:  # a config may end up in a log line or a traceback: never show the key
        key = None if self.api_key is None else "'***'"
        return f"AccessConfig(api_key={key}, max_body_bytes={self.max_body_bytes})"


def read_api_key(path: str | Path) -> str:
    """The key in ``path``: one line (surrounding whitespace and the final newline are ignored)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError("file not found", path=path) from None
    except IsADirectoryError:
        raise InputError("is a directory, not a key file", path=path) from None
    except OSError as err:
        raise InputError(f"cannot read: {err.strerror}", path=path) from None
    try:
        key = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise InputError("the API key must be printable ASCII", path=path) from None
    if not key:
        raise InputError("the API key file is empty", path=path)
    if not _valid_key(key):  # the message never repeats the key
        raise InputError("the API key must be one line of printable ASCII characters without spaces", path=path)
    return key


def _valid_key(key: str) -> bool:
    # What an HTTP header value can carry verbatim: visible ASCII, no whitespace.
    return bool(key) and all("!" <= c <= "~" for c in key)


# auto_error=False: a missing header is our 401 (with our JSON body), not FastAPI's 403.
_bearer = HTTPBearer(auto_error=False, description="the server's API key (gensar serve --api-key-file)")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                               description="the server's API key (gensar serve --api-key-file)")


async def require_write_key(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    header_key: Annotated[str | None, Security(_api_key_header)],
) -> None:
    """A dependency of every write endpoint: 401 unless the request carries the server's key."""
    access: AccessConfig = request.app.state.access
    if access.api_key is None:
        return
    expected = access.api_key.encode("ascii")
    # Headers arrive as latin-1 text; compare bytes in constant time (compare_digest rejects non-ASCII str).
    offered = [c.encode("latin-1") for c in (bearer.credentials if bearer else None, header_key) if c]
    if not any(hmac.compare_digest(c, expected) for c in offered):
        raise HTTPException(status_code=401, detail="this endpoint needs the server's API key "
                            "(Authorization: Bearer KEY or X-API-Key: KEY)",
                            headers={"WWW-Authenticate": "Bearer"})


WRITE_ACCESS = Depends(require_write_key)


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with a 413, before the application sees them."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _content_length(scope)
        if length is not None and length > self.max_bytes:
            await self._refuse(scope, receive, send)  # nothing of the body has been read
            return
        # Read the body here, counting, so a chunked (or lying) body cannot grow past the cap; the
        # application then gets it as one message. Memory: about twice max_bytes (the chunks, then joined).
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: nobody to answer
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Connection: close: the rest of the body is never read, so the connection cannot be reused.
        body = ErrorBody(error=f"request body over the {self.max_bytes}-byte limit (gensar serve --max-body-bytes)")
        response = JSONResponse(status_code=413, content=body.model_dump(), headers={"Connection": "close"})
        await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:  # not a number: the server rejects it; count the bytes instead
                return None
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # later calls wait for the disconnect, as the server's would

    return replayed
