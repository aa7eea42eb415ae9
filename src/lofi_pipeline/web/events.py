"""Server-sent events: a stream that sends a snapshot of some state whenever it differs from the
last one sent, and a reloaded page gets the whole state at once. It looks every `every_s`
seconds (no thread waits per open page); with a `token` (a cheap word for "something changed",
e.g. version counters) the snapshot is made only when the token moves, and every `recheck_s`
seconds in case files changed under the server (a run from the command line)."""
from __future__ import annotations

import asyncio
import json
import time
from typing import Callable

from starlette.requests import Request
from starlette.responses import StreamingResponse


def event_stream(request: Request, snapshot: Callable[[], object], every_s: float = 0.25,
                 token: Callable[[], object] | None = None, recheck_s: float = 5.0,
                 on_open: Callable[[], None] | None = None,
                 on_close: Callable[[], None] | None = None) -> StreamingResponse:
    async def stream():
        if on_open:
            on_open()
        try:
            sent, seen, made_at = None, None, float("-inf")
            while not await request.is_disconnected():
                now_token = token() if token else None
                if token is None or now_token != seen or time.monotonic() - made_at > recheck_s:
                    seen, made_at = now_token, time.monotonic()
                    now = json.dumps(snapshot())
                    if now != sent:
                        sent = now
                        yield f"data: {now}\n\n"
                await asyncio.sleep(every_s)
        finally:
            if on_close:
                on_close()
    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})
