"""The built web UI at ``/``: files from ``web_dist``, and ``index.html`` for any other
GET path that is not an API path (single-page-app routing).

It answers only what no route matched (from the 404 handler), so API paths keep their
JSON 404/405 answers.
"""

from __future__ import annotations

from pathlib import Path

from fastapi.responses import FileResponse, Response

__all__ = ["WebUI"]

_RESERVED = ("/api/", "/metrics", "/healthz", "/readyz")


class WebUI:
    """Static files of the built UI (``dist`` must hold ``index.html``)."""

    def __init__(self, dist: Path) -> None:
        self.root = dist.resolve()
        self.index = self.root / "index.html"

    @classmethod
    def load(cls, dist: Path | None) -> WebUI | None:
        if dist is None or not (dist / "index.html").is_file():
            return None
        return cls(dist)

    def response(self, method: str, path: str) -> Response | None:
        """The file for ``path``, the SPA index, or None when this is not a UI request."""
        if method not in ("GET", "HEAD") or path == "/api" or path.startswith(_RESERVED):
            return None
        candidate = (self.root / path.lstrip("/")).resolve()
        if candidate.is_file() and candidate.is_relative_to(self.root):
            immutable = path.startswith("/assets/")
            cache = "public, max-age=31536000, immutable" if immutable else "no-cache"
            return FileResponse(candidate, headers={"Cache-Control": cache})
        return FileResponse(self.index, headers={"Cache-Control": "no-cache"})
