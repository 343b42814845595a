"""Receiving an upload: a multipart/form-data body streamed straight to files, hashed on the way.

Why not FastAPI's ``UploadFile``: Starlette spools each file part to a temporary file of its own choosing
before the route runs, so a size limit could only be checked after the whole body had been written
somewhere. Here the body is parsed as it arrives (python-multipart's streaming parser), each file part is
written in chunks into the upload's own staging folder and hashed (sha256) as it goes, and the byte count
is checked on every chunk: past ``max_upload_bytes`` the upload stops with 413 and the caller removes the
staging folder, so nothing partial stays on disk and no more than one chunk is ever held in memory.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

FILE_FIELDS = {"files": "input", "reference": "reference-upload"}  # form field -> staging sub-folder
TEXT_FIELDS = {"model"}
MAX_TEXT_FIELD = 4096


class UploadRefused(Exception):
    """An upload that cannot be taken: the HTTP status, the file (as the client named it) and the problem."""

    def __init__(self, status: int, problem: str, file: str | None = None):
        self.status = status
        self.problem = problem
        self.file = file
        super().__init__(f"{file}: {problem}" if file else problem)


@dataclass
class ReceivedFile:
    field: str  # "files" or "reference"
    filename: str  # the client's name (base name only), used in messages
    path: Path  # where it was written, under the staging folder
    size: int = 0
    sha256: str = ""


@dataclass
class Received:
    files: list[ReceivedFile] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)
    total_bytes: int = 0

    def of(self, field_name: str) -> list[ReceivedFile]:
        return [f for f in self.files if f.field == field_name]


MAX_SHOWN_NAME = 255  # longer client names are cut: they are echoed in messages and stored as the study's name


def client_filename(raw: str) -> str:
    """The base name of what the client sent (browsers may send a path), without control characters, at most
    ``MAX_SHOWN_NAME`` characters (the end kept, so the extension still tells the type)."""
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C").strip()
    return (name if len(name) <= MAX_SHOWN_NAME else "…" + name[-(MAX_SHOWN_NAME - 1) :]) or "unnamed"


def safe_filename(name: str) -> str:
    """A name that is safe on any file system: ASCII letters, digits, '.', '_' and '-', never '.' or '..'; at
    most 120 characters, cut at the start so that the extension (which the readers go by) stays."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", ascii_name).strip("._")
    return cleaned[-120:].lstrip("._") or "file"


class _Receiver:
    """python-multipart callbacks writing file parts into ``staging/<sub-folder>/``."""

    def __init__(self, staging: Path, max_files: int):
        self.staging = staging
        self.max_files = max_files
        self.result = Received()
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._file: ReceivedFile | None = None
        self._fh = None
        self._hash = None
        self._text: bytearray | None = None
        self._text_name = ""
        self._taken: set[Path] = set()

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self.on_part_begin,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
        }

    def on_part_begin(self) -> None:
        self._disposition = b""
        self._file = None
        self._text = None

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        if name in FILE_FIELDS:
            if filename is None:
                raise UploadRefused(400, f"form field {name!r} must be a file")
            if len(self.result.files) >= self.max_files:
                raise UploadRefused(413, f"more than {self.max_files} files in one upload")
            shown = client_filename(filename.decode("utf-8", "replace"))
            folder = self.staging / FILE_FIELDS[name]
            folder.mkdir(parents=True, exist_ok=True)
            stem = safe_filename(shown)
            target, k = folder / stem, 2
            while target in self._taken:
                target, k = folder / f"{k}_{stem}", k + 1
            self._taken.add(target)
            self._file = ReceivedFile(name, shown, target)
            self._fh = open(target, "wb")  # noqa: SIM115 - stays open across callbacks; closed in on_part_end/close
            self._hash = hashlib.sha256()
        elif name in TEXT_FIELDS and filename is None:
            self._text, self._text_name = bytearray(), name
        else:
            raise UploadRefused(
                400, f"unexpected form field {name!r}; send 'files' (one or more), optionally 'reference' and 'model'"
            )

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._file is not None:
            chunk = data[start:end]
            self._fh.write(chunk)
            self._hash.update(chunk)
            self._file.size += len(chunk)
        elif self._text is not None:
            self._text += data[start:end]
            if len(self._text) > MAX_TEXT_FIELD:
                raise UploadRefused(400, f"form field {self._text_name!r} is too long")

    def on_part_end(self) -> None:
        if self._file is not None:
            self._fh.close()
            self._fh = None
            self._file.sha256 = self._hash.hexdigest()
            self.result.files.append(self._file)
            self._file = None
        elif self._text is not None:
            self.result.fields[self._text_name] = self._text.decode("utf-8", "replace").strip()
            self._text = None

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _human(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"


async def receive_upload(request: Request, staging: Path, *, max_bytes: int, max_files: int) -> Received:
    """Stream the multipart body of ``request`` into ``staging``; the caller removes ``staging`` on error.

    Raises :class:`UploadRefused` (413 over ``max_bytes`` or ``max_files``, 415 for a body that is not
    multipart/form-data, 400 for a malformed one).
    """
    too_large = f"the upload is larger than the limit of {_human(max_bytes)}"
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise UploadRefused(413, f"{too_large} ({_human(int(declared))} sent)")
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or b"boundary" not in params:
        raise UploadRefused(415, "send the files as multipart/form-data")
    receiver = _Receiver(staging, max_files)
    parser = MultipartParser(params[b"boundary"], receiver.callbacks())
    total = 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > max_bytes:
                raise UploadRefused(413, too_large)
            if chunk:
                # file writes off the event loop, so slice requests stay fast during a large upload
                await run_in_threadpool(parser.write, chunk)
        parser.finalize()
    except FormParserError as exc:
        raise UploadRefused(400, f"malformed multipart/form-data body: {exc}") from exc
    finally:
        receiver.close()
    receiver.result.total_bytes = total
    return receiver.result
