"""HTTP caching of a result's files: they are written once and never change (a re-run is a new result with a
new id), so they are sent ``immutable`` with a strong ETag, and a revalidating browser gets 304 without
the body."""

from __future__ import annotations

from pathlib import Path

from fastapi import Request, Response
from fastapi.responses import FileResponse

IMMUTABLE = "private, max-age=31536000, immutable"  # private: each user's own studies, never a shared cache's


def etag_of(path: Path, suffix: str = "") -> str:
    """A strong validator from the file's size and time: a result's files are written once, never changed."""
    st = path.stat()
    return f'"{st.st_mtime_ns:x}-{st.st_size:x}{suffix}"'


def not_modified(request: Request, etag: str) -> Response | None:
    """304 when the browser's cached copy is this one (If-None-Match), else None."""
    tags = [t.strip() for t in request.headers.get("if-none-match", "").split(",")]
    if etag in tags or "*" in tags:
        return Response(status_code=304, headers={"ETag": etag, "Cache-Control": IMMUTABLE})
    return None


def immutable_file(request: Request, path: Path, media_type: str, **kwargs) -> Response:
    etag = etag_of(path)
    return not_modified(request, etag) or FileResponse(
        path, media_type=media_type, headers={"Cache-Control": IMMUTABLE, "ETag": etag}, **kwargs
    )


class LargeFileResponse(FileResponse):
    """Megabyte chunks: a volume of several MB then passes the middlewares in a few sends, not a hundred."""

    chunk_size = 1 << 20


def gzip_file(request: Request, path: Path) -> Response:
    """A gzip file sent as it is stored, for the client to unpack (Content-Encoding)."""
    etag = etag_of(path)
    return not_modified(request, etag) or LargeFileResponse(
        path,
        media_type="application/octet-stream",
        headers={"Cache-Control": IMMUTABLE, "ETag": etag, "Content-Encoding": "gzip", "Vary": "Accept-Encoding"},
    )
