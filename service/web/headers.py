"""Security headers on every response: what browsers may do with our pages and files."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Pages: our own inline <style>, images from anywhere a release body links (https), forms posting to
# ourselves, no scripts (JSON-LD is data, not script), never framed.
PAGE_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' https: data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# Anything else (feeds, attachments, JSON): nothing runs even if a browser renders it (an SVG, an
# HTML attachment).
FILE_POLICY = "default-src 'none'; frame-ancestors 'none'; sandbox"
_COMMON = {
    "X-Content-Type-Options": "nosniff",
    # Confirm, unsubscribe and preferences URLs carry tokens: never send them to another site. Not
    # no-referrer: with it, browsers post our own forms with "Origin: null", which CSRF checks refuse.
    "Referrer-Policy": "same-origin",
}
_UNRESTRICTED = ("/api/docs",)  # Swagger UI loads its own scripts


class SecurityHeaders:
    """ASGI middleware adding nosniff, a referrer policy and a Content-Security-Policy to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(_UNRESTRICTED):
            await self._app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                # Raw header pairs, not MutableHeaders: this runs on every feed request.
                headers: list[tuple[bytes, bytes]] = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                html = any(
                    name.lower() == b"content-type" and value.startswith(b"text/html")
                    for name, value in headers
                )
                extra = HTML_HEADERS if html else FILE_HEADERS
                headers.extend(pair for pair in extra if pair[0] not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self._app(scope, receive, send_with_headers)


def _raw(headers: dict[str, str]) -> tuple[tuple[bytes, bytes], ...]:
    return tuple((name.lower().encode(), value.encode()) for name, value in headers.items())


# As raw ASGI header pairs, for this middleware and for service.web.published, which adds them itself.
FILE_HEADERS = _raw({**_COMMON, "Content-Security-Policy": FILE_POLICY})
HTML_HEADERS = _raw({**_COMMON, "Content-Security-Policy": PAGE_POLICY, "X-Frame-Options": "DENY"})
