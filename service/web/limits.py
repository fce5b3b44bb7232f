"""Request body size limit: 413 before an oversized body is read, whether or not it declares its size."""

from __future__ import annotations

import json

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(HTTPException):
    """Raised from `receive` once the body streamed so far exceeds the limit.

    An HTTPException, so that FastAPI's body reader re-raises it (any other exception there becomes a
    400) and the app's exception middleware answers it with the same 413 as the middleware's own.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, too_large_detail(limit), headers={"Cache-Control": "no-store"})


def too_large_detail(limit: int) -> str:
    """The 413 message."""
    return f"Request body too large: the limit is {limit} bytes."


class BodySizeLimit:
    """ASGI middleware refusing request bodies over `max_bytes` with 413.

    A declared Content-Length over the limit is refused before the app runs; a body without one
    (chunked) is counted as it streams, and the read that crosses the limit raises BodyTooLarge,
    so at most `max_bytes` plus one chunk is ever held. Handlers that never read the body (the
    one-click unsubscribe) are unaffected by what is streamed.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self._app = app
        self._max = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.strip().isdigit() and int(declared) > self._max:
            await self._refuse(send)
            return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self._max:
                    raise BodyTooLarge(self._max)
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self._app(scope, counting_receive, watching_send)
        except BodyTooLarge:
            # Only reached when no exception handler answered it (a read outside a route).
            if started:
                raise
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        # The same bytes as FastAPI's HTTPException handler writes for BodyTooLarge (JSONResponse).
        body = json.dumps({"detail": too_large_detail(self._max)}, separators=(",", ":")).encode()
        headers = [
            (b"content-length", str(len(body)).encode()),
            (b"content-type", b"application/json"),
            (b"cache-control", b"no-store"),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
