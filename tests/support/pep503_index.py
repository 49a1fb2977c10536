"""A local PEP 503 package index served over HTTP, for tests of lock resolution.

:func:`hook_sdist` makes a source distribution whose in-tree PEP 517 backend, when any
build hook runs, writes a marker file holding the JSON of the environment it saw;
:func:`probe_sdist` one whose backend tries to write files outside its build and reports
what it saw (uid, environment, which writes worked) by POSTing JSON to the index server,
which keeps each report under ``reports/`` (a sandboxed hook can write no file the test
reads);
:func:`plain_wheel` makes a trivial pure-Python wheel. :func:`serve_index` serves a
``simple/<name>/`` tree of such files from a thread.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import io
import json
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

__all__ = ["hook_sdist", "plain_wheel", "probe_sdist", "reports", "serve_index"]

_BACKEND = """\
import json, os
with open({marker!r}, "w") as handle:
    json.dump(dict(os.environ), handle)
METADATA = "Metadata-Version: 2.1\\nName: {name}\\nVersion: {version}\\n"
def get_requires_for_build_wheel(config_settings=None):
    return []
def prepare_metadata_for_build_wheel(directory, config_settings=None):
    info = os.path.join(directory, "{name}-{version}.dist-info")
    os.makedirs(info)
    with open(os.path.join(info, "METADATA"), "w") as handle:
        handle.write(METADATA)
    return "{name}-{version}.dist-info"
"""


_PROBE = """\
import json, os, urllib.request
def _try_write(path):
    try:
        with open(path, "w") as handle:
            handle.write("written by a build hook")
        return "written"
    except OSError as exc:
        return type(exc).__name__
report = {{
    "uid": os.getuid(),
    "gid": os.getgid(),
    "env": dict(os.environ),
    "writes": {{path: _try_write(path) for path in {outside!r}}},
}}
urllib.request.urlopen({report_url!r}, data=json.dumps(report).encode(), timeout=10).read()
METADATA = "Metadata-Version: 2.1\\nName: {name}\\nVersion: {version}\\n"
def get_requires_for_build_wheel(config_settings=None):
    return []
def prepare_metadata_for_build_wheel(directory, config_settings=None):
    info = os.path.join(directory, "{name}-{version}.dist-info")
    os.makedirs(info)
    with open(os.path.join(info, "METADATA"), "w") as handle:
        handle.write(METADATA)
    return "{name}-{version}.dist-info"
"""


def _add(archive: tarfile.TarFile, name: str, text: str) -> None:
    data = text.encode()
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def hook_sdist(index: Path, name: str, version: str, marker: Path) -> Path:
    """An sdist of ``name`` whose build backend writes ``marker`` (its environment, JSON)."""
    return _sdist(
        index, name, version, _BACKEND.format(marker=str(marker), name=name, version=version)
    )


def probe_sdist(
    index: Path, name: str, version: str, *, report_url: str, outside: list[Path]
) -> Path:
    """An sdist whose build backend tries to write each of ``outside`` and POSTs a report
    ``{uid, gid, env, writes: {path: "written" | error name}}`` to ``report_url``."""
    backend = _PROBE.format(
        outside=[str(p) for p in outside], report_url=report_url, name=name, version=version
    )
    return _sdist(index, name, version, backend)


def _sdist(index: Path, name: str, version: str, backend: str) -> Path:
    folder = index / "simple" / name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{version}.tar.gz"
    base = f"{name}-{version}"
    with tarfile.open(path, "w:gz") as archive:
        _add(
            archive,
            f"{base}/PKG-INFO",
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        )
        _add(
            archive,
            f"{base}/pyproject.toml",
            '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n',
        )
        _add(
            archive,
            f"{base}/backend.py",
            backend,
        )
    _write_listing(folder)
    return path


def plain_wheel(index: Path, name: str, version: str) -> Path:
    """A pure-Python wheel of ``name`` (one empty module)."""
    folder = index / "simple" / name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}.py": b"",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: aidp-tests\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = []
    for file, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{file},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    with zipfile.ZipFile(path, "w") as archive:
        for file, data in files.items():
            archive.writestr(file, data)
    _write_listing(folder)
    return path


def _write_listing(folder: Path) -> None:
    links = "".join(
        f'<a href="{p.name}#sha256={hashlib.sha256(p.read_bytes()).hexdigest()}">{p.name}</a>\n'
        for p in sorted(folder.iterdir())
        if p.name != "index.html"
    )
    (folder / "index.html").write_text(f"<html><body>\n{links}</body></html>\n")
    root = folder.parent
    names = "".join(
        f'<a href="{p.name}/">{p.name}</a>\n' for p in sorted(root.iterdir()) if p.is_dir()
    )
    (root / "index.html").write_text(f"<html><body>\n{names}</body></html>\n")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        return None

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        """A build hook's report: kept as ``reports/<n>.json`` under the index root."""
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        folder = Path(self.directory) / "reports"
        folder.mkdir(exist_ok=True)
        (folder / f"{len(list(folder.iterdir()))}-{threading.get_ident()}.json").write_bytes(body)
        self.send_response(204)
        self.end_headers()


def reports(index: Path) -> list[dict[str, object]]:
    """The reports build hooks POSTed to the server of ``index``."""
    folder = index / "reports"
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


@contextmanager
def serve_index(index: Path) -> Iterator[str]:
    """Serve ``index`` on a free loopback port; yields the ``…/simple`` URL."""
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(_Quiet, directory=str(index))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/simple"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
