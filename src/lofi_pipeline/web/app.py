"""`lofi serve`'s routes (Starlette, served by uvicorn): start a run (a take), watch it, listen,
tweak, keep or delete takes, download one, and the radio. Every run is the CLI in a process
group of its own (process.py), with the same config keys, cache and runner; the page only
chooses the arguments. Files are served only from the outputs folder, never through a symlink
out of it; uploads and downloads go through the disk a chunk at a time."""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
import threading
from pathlib import Path

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..core import atomic
from ..core.config import SPEC, ConfigError
from ..reporting import plots
from ..reporting.report import section_marks
from ..stages import catalog
from .controls import controls
from .events import event_stream
from .middleware import RequestLog, SameOrigin
from .radio import Radio
from .state import PROFILES, ServerState

STATIC = Path(__file__).with_name("static")
CHUNK_BYTES = 1 << 20


def error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def json_body(request: Request) -> dict:
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ValueError("send a JSON object")
    return body


def create_app(root: Path, outputs: Path, base_args: list[str], upload_limit_bytes: int, serve,
               say=print) -> Starlette:
    app_state = ServerState(root, outputs, base_args, upload_limit_bytes, serve, say)

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def state(request: Request) -> Response:
        return JSONResponse(app_state.snapshot())

    async def controls_route(request: Request) -> Response:
        """The page's controls from settings.toml, and which stages a change of each re-runs."""
        rekeys = app_state.job.rekeys
        return JSONResponse({"controls": [{**c, "reruns": rekeys.get(c["key"])} for c in controls()],
                             "profiles": PROFILES})

    async def events(request: Request) -> Response:
        return event_stream(request, app_state.snapshot, token=app_state.token)

    async def upload(request: Request) -> Response:
        """A zip of MIDI files as the request's body (its name in ?name=), read a chunk at a time
        into outputs/uploads/<digest>.zip; refused past intake.max_read_mib before or while reading."""
        limit = app_state.upload_limit_bytes
        length = request.headers.get("content-length", "")
        too_large = f"upload too large: over {limit // 2**20} MiB (intake.max_read_mib)"
        if not length.isdigit():
            return error("an upload needs a Content-Length", 411)
        if int(length) > limit:
            return error(too_large, 413)
        name = Path(request.query_params.get("name", "archive.zip")).name or "archive.zip"
        folder = app_state.outputs / "uploads"
        folder.mkdir(parents=True, exist_ok=True)
        digest, size, head = hashlib.sha256(), 0, b""
        fd, tmp = tempfile.mkstemp(prefix=".upload-", dir=folder)
        try:
            with os.fdopen(fd, "wb") as f:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        return error(too_large, 413)
                    head = head or chunk[:2]
                    digest.update(chunk)
                    f.write(chunk)
            if not size:
                return error("no file in the upload (send the zip as the body)", 400)
            if head != b"PK":
                return error(f"{name}: not a zip archive", 400)
            path = folder / f"{digest.hexdigest()[:16]}.zip"
            os.replace(tmp, path)
            atomic.write_json(path.with_suffix(".json"), {"name": name})
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        say(f"upload: {name} ({size} bytes) kept as {path.name}")
        return JSONResponse({"archive": str(path), "name": name, "bytes": size})

    async def start(request: Request) -> Response:
        try:
            body = await json_body(request)
            with app_state.lock:
                if app_state.job.running:
                    return error("a run is going on; wait for it to finish (one run at a time)", 409)
                app_state.start(app_state.choice_for(body), app_state.playing(body))
        except (ConfigError, ValueError, TypeError) as exc:
            return error(str(exc), 400)
        return JSONResponse({"started": app_state.job.state.command, "take": app_state.choice["name"]})

    async def retake(request: Request) -> Response:
        """A new take of one track of the take on screen (generate.retakes lists it once more):
        that track is made first, the others keep their seeds."""
        try:
            index = int((await json_body(request))["index"])
        except (ValueError, KeyError, TypeError):
            return error("send {\"index\": N}", 400)
        with app_state.lock:
            if app_state.job.running:
                return error("a run is going on; wait for it to finish (one run at a time)", 409)
            if app_state.settled is None:
                return error("no take on screen: start a take first", 409)
            if index not in {t["index"] for t in app_state.tracks()}:
                return error(f"no track {index} in the take on screen", 404)
            tweaks = dict(app_state.settled["tweaks"])
            tweaks["generate.retakes"] = [*tweaks.get("generate.retakes", []), index]
            app_state.start({**app_state.settled, "tweaks": tweaks}, index)
        say(f"take {app_state.choice['take']}: a new take of track {index}")
        return JSONResponse({"started": app_state.job.state.command, "track": index})

    async def reset(request: Request) -> Response:
        """The take on screen again with no tweaks: what the page shows is what is heard."""
        with app_state.lock:
            if app_state.job.running:
                return error("a run is going on; wait for it to finish (one run at a time)", 409)
            if app_state.settled is None:
                app_state.choice = {**app_state.choice, "tweaks": {}}
                return JSONResponse({"reset": True, "started": None})
            app_state.start({**app_state.settled, "tweaks": {}})
        return JSONResponse({"reset": True, "started": app_state.job.state.command})

    async def files(request: Request) -> Response:
        path = app_state.safe_path(request.path_params["path"])
        if path is None:
            return error("not a file of this run", 404)
        return FileResponse(path, filename=path.name if request.query_params.get("download") else None)

    async def roll(request: Request) -> Response:
        index = int(request.path_params["index"])
        if not (app_state.outputs / "arrange" / catalog.TRACKS.pattern).exists():
            return error("no arranged tracks yet", 404)
        records = {r.index: r for r in catalog.tracks.read(app_state.outputs / "arrange")}
        if index not in records:
            return error("no such track", 404)
        r = records[index]
        midi = (app_state.outputs / "arrange" / catalog.midi_name(r)).read_bytes()
        png = await asyncio.to_thread(plots.piano_roll, midi, f"{r.title}: {r.key}, {r.tempo_bpm} BPM",
                                      section_marks(r))
        return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})

    async def take_zip(request: Request) -> Response:
        """One take as a zip that stands alone, written to disk a file at a time, then streamed."""
        take_id = request.path_params.get("take")
        if take_id is None:
            take_id = app_state.settled["take"] if app_state.settled else None
        if take_id is None or app_state.takes.get(int(take_id)) is None:
            return error("no such take: start a run", 404)
        fd, tmp = tempfile.mkstemp(prefix=".download-", suffix=".zip", dir=app_state.outputs)
        os.close(fd)
        name = await asyncio.to_thread(app_state.takes.zip_to, int(take_id), Path(tmp))
        return FileResponse(tmp, media_type="application/zip", filename=name,
                            background=BackgroundTask(os.unlink, tmp))

    async def take_keep(request: Request) -> Response:
        try:
            kept = bool((await json_body(request))["kept"])
        except (ValueError, KeyError):
            return error("send {\"kept\": true|false}", 400)
        take = app_state.takes.keep(int(request.path_params["take"]), kept)
        return JSONResponse(take) if take else error("no such take", 404)

    async def take_delete(request: Request) -> Response:
        take_id = int(request.path_params["take"])
        if app_state.job.running and app_state.choice.get("take") == take_id:
            return error("this take is being made; stop the run first", 409)
        if not app_state.takes.delete(take_id):
            return error("no such take", 404)
        if app_state.settled and app_state.settled["take"] == take_id:
            app_state.settled = None
        say(f"take {take_id}: deleted")
        return JSONResponse({"deleted": take_id})

    async def stop(request: Request) -> Response:
        await asyncio.to_thread(app_state.job.stop)
        return JSONResponse({"stopped": True})

    async def radio_start(request: Request) -> Response:
        if app_state.job.running:  # its train artifact may be mid-commit: copy a finished one only
            return error("a run is going on; the radio starts when it is done", 409)
        if app_state.radio is None:
            choice = app_state.settled or app_state.choice
            name = f"{choice['name'] or SPEC['run']['name']['default']}, radio"
            app_state.radio = Radio(app_state.root, app_state.outputs, app_state.run_args({**choice, "name": ""}),
                                    name, serve.radio_ahead, serve.radio_kept)
        try:
            await asyncio.to_thread(app_state.radio.start)
        except RuntimeError as exc:
            app_state.radio = None
            return error(str(exc), 409)
        say("radio: on")
        return JSONResponse(app_state.radio.state())

    async def radio_stop(request: Request) -> Response:
        if app_state.radio is not None:
            await asyncio.to_thread(app_state.radio.stop)
            app_state.radio = None
            say("radio: off")
        return JSONResponse({"on": False})

    async def radio_state(request: Request) -> Response:
        return JSONResponse(app_state.radio.state() if app_state.radio else {"on": False})

    async def radio_playing(request: Request) -> Response:
        if app_state.radio is not None:
            try:
                index = int((await json_body(request))["index"])
            except (ValueError, KeyError, TypeError):
                return error("send {\"index\": N}", 400)
            await asyncio.to_thread(app_state.radio.started_playing, index)
        return JSONResponse({"ok": True})

    async def radio_events(request: Request) -> Response:
        """The radio's queue while this page listens: an open stream is a listener."""
        radio = app_state.radio
        if radio is None:
            return error("the radio is off", 409)
        return event_stream(request, radio.state, on_open=lambda: radio.listening(+1),
                            on_close=lambda: radio.listening(-1))

    @contextlib.asynccontextmanager
    async def lifespan(app):
        if not app_state.job.running:  # what the outputs hold, for the options of the take on screen
            threading.Thread(target=app_state.job.read_back, daemon=True, args=(
                ["--outputs", str(app_state.outputs), *app_state.run_args(app_state.choice)],)).start()
        app_state.job.process.warm()
        yield
        await asyncio.to_thread(app_state.job.stop, 10.0, True)  # the server stops: so do its run and workers
        if app_state.radio is not None:
            await asyncio.to_thread(app_state.radio.stop)

    routes = [Route("/", index), Route("/api/state", state), Route("/api/events", events),
              Route("/api/controls", controls_route),
              Route("/api/upload", upload, methods=["POST"]), Route("/api/run", start, methods=["POST"]),
              Route("/api/reset", reset, methods=["POST"]), Route("/api/retake", retake, methods=["POST"]),
              Route("/api/stop", stop, methods=["POST"]), Route("/api/roll/{index:int}.png", roll),
              Route("/api/download.zip", take_zip), Route("/api/takes/{take:int}.zip", take_zip),
              Route("/api/takes/{take:int}/keep", take_keep, methods=["POST"]),
              Route("/api/takes/{take:int}/delete", take_delete, methods=["POST"]),
              Route("/files/{path:path}", files),
              Route("/api/radio/start", radio_start, methods=["POST"]),
              Route("/api/radio/stop", radio_stop, methods=["POST"]), Route("/api/radio/events", radio_events),
              Route("/api/radio/playing", radio_playing, methods=["POST"]), Route("/api/radio", radio_state),
              Mount("/static", StaticFiles(directory=STATIC), name="static")]
    app = Starlette(routes=routes, lifespan=lifespan,
                    middleware=[Middleware(RequestLog, say=say), Middleware(SameOrigin)])
    app.state.lofi = app_state
    return app
