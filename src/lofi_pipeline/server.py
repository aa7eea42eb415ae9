"""`lofi serve`: a local web app (Starlette, served by uvicorn) to start a run, watch it, listen,
tweak and download. Every run is the CLI in a subprocess (jobs.py), with the same config keys,
cache and runner; the page only chooses the arguments. The page and its script ship in web/.
Files are served only from the outputs folder, never through a symlink out of it."""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import zipfile
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from . import plots
from .audio.playlist import PLAYLIST
from .core import atomic
from .jobs import PipelineJob
from .radio import Radio
from .report import section_marks
from .stages import catalog

WEB = Path(__file__).with_name("web")
PROFILES = ("default", "quick")
# What the page may change, and what a change re-runs (the runner decides; this is for the page).
TWEAKS = {"master.preset": str, "master.lowpass_hz": float, "master.crackle_per_second": float,
          "master.hiss_db": float, "master.reverb_wet": float, "master.wow_cents": float,
          "master.target_lufs": float, "generate.temperature": float, "run.seed": int,
          "generate.loop_bars": int, "generate.form": str}


class App:
    """The server's state: where outputs live, the arguments every run gets, the current run."""

    def __init__(self, root: Path, outputs: Path, base_args: list[str], upload_limit_bytes: int):
        self.root, self.outputs, self.base_args = root, outputs, base_args
        self.upload_limit_bytes = upload_limit_bytes
        self.job = PipelineJob(root)
        self.radio: Radio | None = None
        self.choice: dict = {"archive": "", "profile": "default", "tweaks": {}}

    def run_args(self) -> list[str]:
        """The options of a run as the page chose them (the radio's too, with its own outputs)."""
        args = list(self.base_args)
        if self.choice["archive"]:
            args += ["--archive", self.choice["archive"]]
        if self.choice["profile"] != "default":
            args += ["--profile", self.choice["profile"]]
        for key, value in self.choice["tweaks"].items():
            args += ["--set", f"{key}={json.dumps(value)}"]
        return args

    def tracks(self) -> list[dict]:
        """The exported tracks of the last finished run, with what the page shows of each."""
        try:
            exports = catalog.exports.read(self.outputs / "export")
        except Exception:  # noqa: BLE001 - no finished run yet (or one from another version)
            return []
        records = {}
        if (self.outputs / "arrange" / catalog.TRACKS.pattern).exists():
            records = {r.index: r for r in catalog.tracks.read(self.outputs / "arrange")}
        out = []
        for e in exports:
            r = records.get(e.index)
            out.append({"index": e.index, "title": e.title, "seconds": e.seconds, "mp3": e.file,
                        "stems": e.stems, "key": r.key if r else None, "tempo_bpm": r.tempo_bpm if r else None,
                        "form": r.form if r else "", "metre": r.metre if r else None,
                        "midi": f"arrange/{catalog.midi_name(r)}" if r else None,
                        "wav": f"master/{r.stem}.wav" if r else None, "seed": r.seed if r else None,
                        "roll": f"/api/roll/{e.index}.png" if r else None})
        return out

    def safe_path(self, relative: str) -> Path | None:
        """The file `relative` names under the outputs folder, or None: no `..`, no absolute path,
        no symlink anywhere on the way, nothing outside."""
        base = self.outputs.resolve()
        candidate = (base / relative)
        try:
            resolved = candidate.resolve(strict=True)
        except (OSError, RuntimeError, ValueError):  # missing, a loop, a NUL byte
            return None
        if not resolved.is_relative_to(base) or not resolved.is_file():
            return None
        walked = base
        for part in Path(relative).parts:
            walked = walked / part
            if part in ("..", "") or walked.is_symlink():
                return None
        return resolved


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


def create_app(root: Path, outputs: Path, base_args: list[str], upload_limit_bytes: int) -> Starlette:
    app_state = App(root, outputs, base_args, upload_limit_bytes)

    async def index(request: Request) -> Response:
        return FileResponse(WEB / "index.html")

    async def state(request: Request) -> Response:
        return JSONResponse({"run": app_state.job.state.to_json(), "tracks": app_state.tracks(),
                             "choice": app_state.choice})

    async def events(request: Request) -> Response:
        """Server-sent events: the whole state whenever it changes (a reloaded page gets it at once)."""
        async def stream():
            version = -1
            while not await request.is_disconnected():
                now = app_state.job.state.version
                if now != version:
                    version = now
                    payload = {"run": app_state.job.state.to_json(), "tracks": app_state.tracks(),
                               "choice": app_state.choice}
                    yield f"data: {json.dumps(payload)}\n\n"
                await asyncio.sleep(0.25)  # a version check is cheap; no thread waits per page
        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store"})

    async def upload(request: Request) -> Response:
        """A zip of MIDI files, kept under outputs/uploads/ by its digest; intake checks it when a run starts."""
        limit = app_state.upload_limit_bytes
        length = request.headers.get("content-length", "")
        if not length.isdigit():
            return JSONResponse({"error": "an upload needs a Content-Length"}, status_code=411)
        if int(length) > limit + 65536:  # the server reads no more than this: the limit holds before parsing
            return JSONResponse({"error": f"upload too large: over {limit // 2**20} MiB (intake.max_read_mib)"},
                                status_code=413)
        form = await request.form(max_files=1, max_fields=4)
        item = form.get("archive")
        if item is None or not hasattr(item, "read"):
            return JSONResponse({"error": "no file in the upload (field 'archive')"}, status_code=400)
        data = await item.read(limit + 1)
        if len(data) > limit:
            return JSONResponse({"error": f"upload too large: over {limit // 2**20} MiB (intake.max_read_mib)"},
                                status_code=413)
        if not data.startswith(b"PK"):
            return JSONResponse({"error": f"{item.filename}: not a zip archive"}, status_code=400)
        path = app_state.outputs / "uploads" / f"{hashlib.sha256(data).hexdigest()[:16]}.zip"
        atomic.write_bytes(path, data)
        return JSONResponse({"archive": str(path), "name": item.filename, "bytes": len(data)})

    async def start(request: Request) -> Response:
        try:
            body = await request.json()
            assert isinstance(body, dict)
        except (ValueError, AssertionError):
            return JSONResponse({"error": "send a JSON object"}, status_code=400)
        if app_state.job.running:
            return JSONResponse({"error": "a run is going on; wait for it to finish (one run at a time)"},
                                status_code=409)
        profile = body.get("profile", "default")
        if profile not in PROFILES:
            return JSONResponse({"error": f"unknown profile {profile!r} ({', '.join(PROFILES)})"}, status_code=400)
        archive = body.get("archive") or ""
        uploads = (app_state.outputs / "uploads").resolve()
        if archive and not (isinstance(archive, str) and Path(archive).resolve().parent == uploads
                            and Path(archive).suffix == ".zip" and Path(archive).is_file()):
            return JSONResponse({"error": "choose the default set or upload an archive"}, status_code=400)
        tweaks = dict(app_state.choice["tweaks"])
        try:
            for key, value in dict(body.get("tweaks") or {}).items():
                if key not in TWEAKS:
                    return JSONResponse({"error": f"{key} cannot be changed here"}, status_code=400)
                tweaks[key] = TWEAKS[key](value)
        except (TypeError, ValueError) as exc:
            return JSONResponse({"error": f"a tweak's value: {exc}"}, status_code=400)
        app_state.choice = {"archive": archive, "profile": profile, "tweaks": tweaks}
        app_state.job.start(["all", "--outputs", str(app_state.outputs), *app_state.run_args()])
        return JSONResponse({"started": app_state.job.state.command})

    async def files(request: Request) -> Response:
        path = app_state.safe_path(request.path_params["path"])
        if path is None:
            return JSONResponse({"error": "not a file of this run"}, status_code=404)
        return FileResponse(path, filename=path.name if request.query_params.get("download") else None)

    async def roll(request: Request) -> Response:
        index = int(request.path_params["index"])
        if not (app_state.outputs / "arrange" / catalog.TRACKS.pattern).exists():
            return JSONResponse({"error": "no arranged tracks yet"}, status_code=404)
        records = {r.index: r for r in catalog.tracks.read(app_state.outputs / "arrange")}
        if index not in records:
            return JSONResponse({"error": "no such track"}, status_code=404)
        r = records[index]
        midi = (app_state.outputs / "arrange" / catalog.midi_name(r)).read_bytes()
        png = await asyncio.to_thread(plots.piano_roll, midi, f"{r.title}: {r.key}, {r.tempo_bpm} BPM",
                                      section_marks(r))
        return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})

    async def download(request: Request) -> Response:
        """Everything of the run as one zip: the MP3s, their stems and MIDI, the playlist, the report."""
        tracks = app_state.tracks()
        if not tracks:
            return JSONResponse({"error": "nothing to download yet: start a run"}, status_code=404)
        names = [t["mp3"] for t in tracks] + [f for t in tracks for f in t["stems"]]
        names += [n for n in (PLAYLIST, "report.html") if (app_state.outputs / n).exists()]
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as z:
            for name in names:
                z.write(app_state.outputs / name, f"lofi/{name}")
        return Response(buffer.getvalue(), media_type="application/zip",
                        headers={"Content-Disposition": "attachment; filename=lofi-run.zip"})

    async def stop(request: Request) -> Response:
        await asyncio.to_thread(app_state.job.stop)
        return JSONResponse({"stopped": True})

    async def radio_start(request: Request) -> Response:
        if app_state.job.running:  # its train artifact may be mid-commit: copy a finished one only
            return JSONResponse({"error": "a run is going on; the radio starts when it is done"}, status_code=409)
        if app_state.radio is None:
            app_state.radio = Radio(app_state.root, app_state.outputs, app_state.run_args())
        try:
            await asyncio.to_thread(app_state.radio.start)
        except RuntimeError as exc:
            app_state.radio = None
            return JSONResponse({"error": str(exc)}, status_code=409)
        return JSONResponse(app_state.radio.state())

    async def radio_state(request: Request) -> Response:
        return JSONResponse(app_state.radio.state() if app_state.radio else {"on": False})

    async def radio_playing(request: Request) -> Response:
        if app_state.radio is not None:
            try:
                app_state.radio.started_playing(int((await request.json())["index"]))
            except (ValueError, KeyError, TypeError):
                return JSONResponse({"error": "send {\"index\": N}"}, status_code=400)
        return JSONResponse({"ok": True})

    async def radio_events(request: Request) -> Response:
        """The radio's queue while this page listens: an open stream is a listener."""
        radio = app_state.radio
        if radio is None:
            return JSONResponse({"error": "the radio is off"}, status_code=409)

        async def stream():
            radio.listening(+1)
            try:
                sent = None
                while not await request.is_disconnected():
                    now = radio.state()
                    if now != sent:
                        sent = now
                        yield f"data: {json.dumps(now)}\n\n"
                    await asyncio.sleep(0.25)
            finally:
                radio.listening(-1)
        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        await asyncio.to_thread(app_state.job.stop)  # the server stops: so does its run, workers and all
        if app_state.radio is not None:
            await asyncio.to_thread(app_state.radio.stop)

    routes = [Route("/", index), Route("/api/state", state), Route("/api/events", events),
              Route("/api/upload", upload, methods=["POST"]), Route("/api/run", start, methods=["POST"]),
              Route("/api/stop", stop, methods=["POST"]), Route("/api/roll/{index:int}.png", roll),
              Route("/api/download.zip", download), Route("/files/{path:path}", files),
              Route("/api/radio/start", radio_start, methods=["POST"]), Route("/api/radio/events", radio_events),
              Route("/api/radio/playing", radio_playing, methods=["POST"]), Route("/api/radio", radio_state),
              Mount("/static", StaticFiles(directory=WEB), name="static")]
    app = Starlette(routes=routes, lifespan=lifespan, middleware=[Middleware(SameOrigin)])
    app.state.lofi = app_state
    return app

