"""The web page: `/` and its two assets under `/static/`, read from the `app.web` package data.

Open without an API key: the page holds no data; it asks for a key and sends it with every API call.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import Response

from app.errors import NotFound

router = APIRouter(include_in_schema=False)

# A fixed list, not a folder served as is: nothing else in the package can be fetched through /static/.
ASSETS = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
# Only this origin's own files run or load: no CDN (the page works offline) and no inline script that text from a
# document could turn into (the page also inserts every server string as text, never as HTML).
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
                               "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidate: a new release's page and script arrive together
}


@lru_cache(maxsize=8)
def _asset(name: str) -> bytes:
    return files("app.web").joinpath(name).read_bytes()


@router.get("/")
async def index() -> Response:
    return Response(_asset("index.html"), media_type="text/html; charset=utf-8", headers=HEADERS)


@router.get("/static/{name}")
async def static(name: str) -> Response:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise NotFound(f"no static file {name!r}")
    return Response(_asset(name), media_type=media_type, headers=HEADERS)
