"""Server-sent events: a stream that sends a snapshot of some state whenever it differs from the
last one sent. It looks every `every_s` seconds (a snapshot is cheap, and no thread waits per
open page), and a reloaded page gets the whole state at once."""
from __future__ import annotations

import asyncio
import json
from typing import Callable

from starlette.requests import Request
from starlette.responses import StreamingResponse


def event_stream(request: Request, snapshot: Callable[[], object], every_s: float = 0.25,
                 on_open: Callable[[], None] | None = None,
                 on_close: Callable[[], None] | None = None) -> StreamingResponse:
    async def stream():
        if on_open:
            on_open()
        try:
            sent = None
            while not await request.is_disconnected():
                now = json.dumps(snapshot())
                if now != sent:
                    sent = now
                    yield f"data: {now}\n\n"
                await asyncio.sleep(every_s)
        finally:
            if on_close:
                on_close()
    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})
