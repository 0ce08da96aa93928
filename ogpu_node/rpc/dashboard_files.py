"""Serving the dashboards: four pages and their static files under `/dashboard/`.

The files ship inside the package (`ogpu_node/dashboard/static/`) and are read once, when the
server starts, into a table keyed by name: a request names a file of that table or gets 404, so
no request path ever reaches the file system (no traversal to guard). Every answer carries a
strict Content-Security-Policy (scripts and styles from this origin only, no inline script, no
framing), `nosniff`, and an ETag with `no-cache`: the browser keeps a copy but asks whether it
changed, so an upgraded node never serves a stale page.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

from ogpu_node.errors import OgpuError

STATIC_PACKAGE = "ogpu_node.dashboard"
PREFIX = "/dashboard"
STATIC_PREFIX = "/dashboard/static/"
PAGES = {
    "/dashboard/": "network.html",
    "/dashboard/network": "network.html",
    "/dashboard/customer": "customer.html",
    "/dashboard/provider": "provider.html",
    "/dashboard/governance": "governance.html",
}
"""Page paths and the file each serves."""

CONTENT_TYPES = {
    "html": "text/html; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "svg": "image/svg+xml",
}
ASSET_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}\.(html|js|css|svg)$")
"""What a served file may be called; anything else in `static/` is not served."""

MAX_ASSETS = 64
MAX_ASSET_BYTES = 512 * 1024
"""Limits on what the server holds in memory (the shipped files are a few dozen KiB)."""

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
"""No inline script or style, nothing from another origin. `connect-src 'self'` covers the
same host's ws:// WebSocket (CSP Level 3)."""

SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


class DashboardFileError(OgpuError):
    """A shipped dashboard file breaks the limits (a packaging mistake, found at startup)."""


@dataclass(frozen=True)
class Asset:
    """One served file."""

    body: bytes
    content_type: str
    etag: str


@dataclass(frozen=True)
class Answer:
    """What the server sends for a dashboard path."""

    status: int
    body: bytes
    content_type: str
    headers: list[tuple[bytes, bytes]]


class DashboardFiles:
    """The shipped files, loaded once; `answer` maps a request to a response."""

    def __init__(self, assets: dict[str, Asset] | None = None) -> None:
        self.assets = assets if assets is not None else load_assets()

    def answer(self, path: str, method: str, if_none_match: str | None) -> Answer:
        """The response to `method path` (only GET and HEAD are served)."""
        if path == PREFIX:
            return _plain(308, "moved to /dashboard/", [(b"location", b"/dashboard/")])
        name = PAGES.get(path)
        if name is None and path.startswith(STATIC_PREFIX):
            name = path[len(STATIC_PREFIX):]
        asset = self.assets.get(name) if name else None
        if asset is None:
            return _plain(404, f"no such dashboard file: {path[:100]}")
        if method not in ("GET", "HEAD"):
            return _plain(405, "use GET", [(b"allow", b"GET, HEAD")])
        headers = [(b"etag", asset.etag.encode()), (b"cache-control", b"no-cache")]
        if if_none_match is not None and asset.etag in if_none_match.split(","):
            return Answer(304, b"", asset.content_type, headers)
        return Answer(200, b"" if method == "HEAD" else asset.body, asset.content_type, headers)


def load_assets() -> dict[str, Asset]:
    """Every servable file of the package's `static/` folder, by name."""
    folder = resources.files(STATIC_PACKAGE).joinpath("static")
    assets: dict[str, Asset] = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        match = ASSET_NAME.match(entry.name)
        if match is None or not entry.is_file():
            continue
        body = entry.read_bytes()
        if len(body) > MAX_ASSET_BYTES or len(assets) >= MAX_ASSETS:
            raise DashboardFileError(f"dashboard file {entry.name} is over the limits "
                             f"({MAX_ASSET_BYTES} bytes, {MAX_ASSETS} files)")
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        assets[entry.name] = Asset(body, CONTENT_TYPES[match.group(1)], etag)
    return assets


def _plain(status: int, text: str, extra: list[tuple[bytes, bytes]] | None = None) -> Answer:
    return Answer(status, text.encode(), "text/plain; charset=utf-8", extra or [])
