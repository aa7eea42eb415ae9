"""The app's middleware: who may ask (same origin, this host's name), and the terminal's log of
requests."""
from __future__ import annotations

from starlette.responses import JSONResponse


class SameOrigin:
    """Refuses a POST that another site's page sends (a browser adds its Origin): a page on the
    web must not start runs on this machine; and any request whose Host is not this server's
    name (DNS rebinding)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            headers = {k.decode(): v.decode() for k, v in scope["headers"]}
            host = headers.get("host", "")
            origin = headers.get("origin")
            name = host.rsplit(":", 1)[0].strip("[]")
            bad_host = name not in ("127.0.0.1", "localhost", "::1") and name != scope["server"][0]
            bad_origin = scope["method"] == "POST" and origin is not None and origin.split("//", 1)[-1] != host
            if bad_host or bad_origin:
                await JSONResponse({"error": "requests from another site are refused"}, status_code=403)(
                    scope, receive, send)
                return
        await self.app(scope, receive, send)


class RequestLog:
    """One terminal line per request to /api/ or a download, with its answer's status."""

    def __init__(self, app, say):
        self.app, self.say = app, say

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path.startswith("/api/") or "download" in scope.get("query_string", b"")
                                           .decode()):
            await self.app(scope, receive, send)
            return

        async def logged(message):
            if message["type"] == "http.response.start":
                self.say(f"{scope['method']} {path} {message['status']}")
            await send(message)
        await self.app(scope, receive, logged)
