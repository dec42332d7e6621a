"""The web explorer (api/server/explorer/: index.html, app.js, verify.js, style.css) and what it reads besides the API.

`GET /` is the page, `GET /explorer/{file}` its other files: public, since the page holds no data. What it shows it
fetches from the API with the bearer token the user signs in with (kept in the tab's sessionStorage), and it checks
in the browser what the log signed: the checkpoint's Ed25519 signature against the log key (pinned by the user, or
the one /api/v1/log names, which the page says), and each event's inclusion proof against that checkpoint.

Only the files in the folder are served (a fixed list read at import): any other name, `..` included, is a 404. The
answers carry a strict Content-Security-Policy (scripts, styles and requests to this origin only, no inline code,
no frames), and `no-cache` so that a browser revalidates (ETag, Last-Modified) and never runs an old script against
a new API.

Read workers (api/server/readers.py) send these requests to the writer, as every route they do not answer
themselves: their catch-all `/{tail:.*}` matches `/` and `/explorer/...`. Servers that stand by (api/server/standby.py)
serve the files themselves: they are the same in every server of the log.

`GET /api/v1/witnesses` (public: names, keys and sizes are what a monitor verifies with): each configured witness's
name, verifier keys and the largest checkpoint size it has cosigned (from the `checkpoint_cosignatures` table), and
k, the cosignatures a checkpoint needs to count as witnessed; `{"witnesses": [], "k": null}` without witnesses.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from api.server.state import LOG, WITNESS_JOB
from api.server.witnessing import CosignatureStore
from log.errors import NotFound

FOLDER = Path(__file__).resolve().parent / "explorer"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
# The page's own origin only: no inline script or style, no eval, no frames, no plugins; a blob: URL only for the
# evidence bundle the page saves (a download, not content) and for images it builds.
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
                           "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
                           "frame-ancestors 'none'; form-action 'self'")
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}


def _served_files() -> dict[str, Path]:
    """name -> path of every file the explorer serves: the folder's regular files of a known type."""
    if not FOLDER.is_dir():
        return {}
    return {path.name: path for path in FOLDER.iterdir()
            if path.is_file() and not path.is_symlink() and path.suffix in CONTENT_TYPES}


FILES = _served_files()


def _file_response(path: Path) -> web.FileResponse:
    return web.FileResponse(path, headers={**HEADERS, "Content-Type": CONTENT_TYPES[path.suffix]})


async def index(request: web.Request) -> web.StreamResponse:
    page = FILES.get("index.html")
    if page is None:
        raise NotFound("the explorer's files are not installed with this server")
    return _file_response(page)


async def explorer_file(request: web.Request) -> web.StreamResponse:
    path = FILES.get(request.match_info["file"])
    if path is None:
        raise NotFound(f"the explorer has no file {request.match_info['file'][:80]!r}")
    return _file_response(path)


async def witnesses(request: web.Request) -> web.Response:
    job = request.app.get(WITNESS_JOB)
    if job is None:
        return web.json_response({"witnesses": [], "k": None}, headers={"Cache-Control": "no-cache"})
    latest = await CosignatureStore.for_log(request.app[LOG]).latest_sizes()
    listed = []
    for endpoint in job.witnesses:
        listed.append({"name": endpoint.name, "keys": [verifier.verifier_key for verifier in endpoint.verifiers],
                       "latest_cosigned_size": latest.get(endpoint.name)})
    return web.json_response({"witnesses": listed, "k": job.policy.k}, headers={"Cache-Control": "no-cache"})


EXPLORER_ROUTES = [
    web.get("/", index, allow_head=False),
    web.get("/explorer/{file}", explorer_file, allow_head=False),
    web.get("/api/v1/witnesses", witnesses, allow_head=False),
]
