"""A local stand-in for the Hugging Face hub: the part of its HTTP API that ``huggingface_hub.hf_hub_download`` uses.

Files are served from ``<root>/<org>/<name>/<filename>`` (``filename`` may contain slashes) at
``/{org}/{name}/resolve/{revision}/{filename}``, for ``HEAD`` and ``GET`` (with ``Range``), on 127.0.0.1 only:

- found: ``200`` (``206`` for a range) with ``X-Repo-Commit`` (:data:`COMMIT`, the same for every repo and file),
  ``ETag`` and ``X-Linked-Etag`` (the quoted sha256 of the content, as the hub gives for LFS files; the cached blob
  is named after it), ``Content-Length`` and ``X-Linked-Size``. No ``X-Xet-*`` header and no ``Link`` is sent, so
  the client never takes its xet path; no redirect either (the hub redirects LFS files to a CDN; the client
  handles both the same way).
- missing file in an existing repo: ``404``, ``X-Error-Code: EntryNotFound`` (and ``X-Repo-Commit``, so the client
  records the miss under ``.no_exist/``): ``hf_hub_download`` raises ``huggingface_hub.errors.RemoteEntryNotFoundError``
  (a subclass of ``EntryNotFoundError`` and of ``HfHubHTTPError``).
- unknown repo: ``404``, ``X-Error-Code: RepoNotFound`` (the code the client checks; the hub does not spell it
  ``RepositoryNotFound``): ``RepositoryNotFoundError``. A revision other than ``main`` or :data:`COMMIT`: ``404``,
  ``RevisionNotFound``: ``RevisionNotFoundError``.
- ``GET /api/agent-harnesses`` (the client asks once per process for its user-agent string unless telemetry is
  off): an empty registry. ``hf_hub_download`` makes no other request (no ``/api/models/...`` call).

Which requests were served is logged in ``LocalHub.requests``; :meth:`LocalHub.truncate` makes a file's ``GET``
stop early (an interrupted download).

Pointing huggingface_hub 2.4.0 at the server:

- **subprocess** (``python -m nada ...``, the app): environment variables suffice, as the child imports
  huggingface_hub afresh: ``subprocess.run(cmd, env={**os.environ, **hub_env(hub, cache_dir)})``.
- **in-process**: ``huggingface_hub.constants`` reads ``HF_ENDPOINT``, ``HF_HUB_OFFLINE`` and the other variables
  once, at import (and gradio, among others, imports huggingface_hub early; tests/conftest.py sets
  ``HF_HUB_OFFLINE=1`` before). ``hf_hub_download`` builds its URL from ``constants.HUGGINGFACE_CO_URL_TEMPLATE``
  (``ENDPOINT + "/{repo_id}/resolve/{revision}/{filename}"``, also computed at import) and only swaps the prefix
  ``constants.ENDPOINT`` when given ``endpoint=`` (nada does not pass it); its HTTP client refuses every request
  while ``constants.HF_HUB_OFFLINE`` is true. Setting environment variables is therefore not enough: patch both
  the constants and the variables (nada reads ``HF_HUB_OFFLINE``, ``HF_ENDPOINT`` and ``NADA_CACHE`` from the
  environment itself), with :func:`patch_hub_constants` (pytest's ``monkeypatch``) or :func:`hub_patched`
  (a context manager).

Failures as ``hf_hub_download`` 2.4.0 reports them: missing file ``RemoteEntryNotFoundError``; missing repo
``RepositoryNotFoundError``; a body cut short makes httpx raise ``RemoteProtocolError``, which the client retries
five times, one second apart, resuming with ``Range`` from the last whole 10 MiB read chunk it wrote, before
re-raising ``httpx2.RemoteProtocolError`` (about 5 s). Its per-download temporary file
``blobs/<etag>.<random>.incomplete`` is deleted on failure: the cache keeps ``refs/main``, ``CACHEDIR.TAG``, a lock
file and empty folders, never a partial blob or snapshot link. An unreachable server gives
``LocalEntryNotFoundError`` (caused by ``httpx2.ConnectError``) after the client's own retries, ~23 s; nada's
``hub_reachable`` check answers within milliseconds and skips them. The commit never changes: a cache that holds
a file at :data:`COMMIT` does not download it again after the file here was replaced (use a fresh cache).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

COMMIT = "5eedc0de" * 5  # the 40-hex commit every repo is at (X-Repo-Commit)
HOST = "127.0.0.1"  # never anything else
CHUNK = 1 << 20  # bytes per write when streaming a file
_RESOLVE = re.compile(r"^/([^/]+)/([^/]+)/resolve/([^/]+)/(.+)$")
_AGENT_REGISTRY = {"standardEnvVars": [], "harnesses": {}}  # huggingface_hub's empty agent-harness registry
ETAG_TIMEOUT_S = 5  # HEAD timeout given to clients (the local server answers in milliseconds)
DOWNLOAD_TIMEOUT_S = 10  # per-read timeout given to clients


def _check_part(part: str, what: str) -> str:
    """A path component that cannot escape the served folder."""
    if part in ("", ".", "..") or "\\" in part or "\x00" in part:
        raise ValueError(f"invalid {what}: {part!r}")
    return part


def split_repo_id(repo_id: str) -> tuple[str, str]:
    """``"org/name"`` -> ``("org", "name")``; exactly one slash."""
    org, sep, name = repo_id.partition("/")
    if not sep or "/" in name:
        raise ValueError(f"repo_id must be 'org/name', got {repo_id!r}")
    return _check_part(org, "repo_id"), _check_part(name, "repo_id")


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive byte range ``(start, end)`` of a ``Range: bytes=...`` header; None for the whole file.

    Raises ``ValueError`` for a range that cannot be satisfied (answered with 416)."""
    if not header:
        return None
    match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header)
    if not match or not (match.group(1) or match.group(2)):
        return None  # multi-range or malformed: ignored, as servers may; the whole file follows with 200
    first, last = match.groups()
    if not first:  # suffix: the last N bytes
        start, end = max(size - int(last), 0), size - 1
    else:
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
    if start >= size or start > end:
        raise ValueError(f"unsatisfiable range {header!r} for {size} bytes")
    return start, end


class _Handler(BaseHTTPRequestHandler):
    """One request; all logic lives in :class:`LocalHub`."""

    protocol_version = "HTTP/1.1"  # every response says Connection: close, so each thread ends after one request
    server: _Server

    def do_HEAD(self) -> None:
        """Metadata of a file."""
        self.server.hub._handle(self, head=True)

    def do_GET(self) -> None:
        """A file (or a range of it)."""
        self.server.hub._handle(self, head=False)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: ``LocalHub.requests`` is the log."""


class _Server(ThreadingHTTPServer):
    """The threaded server, with a reference to its hub."""

    daemon_threads = True  # a stuck client never keeps the interpreter alive
    hub: LocalHub


class LocalHub:
    """A threaded HTTP server on 127.0.0.1 (a free port) answering ``hf_hub_download`` from files under ``root``.

    Use as a context manager (``with LocalHub(tmp_path / "hub") as hub: ...``) or ``start()`` / ``stop()``.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.requests: list[tuple[str, str]] = []  # (method, decoded path) of every request served, in order
        self.downloads: list[tuple[str, str]] = []  # (repo_id, filename) of every file body sent (200 or 206 GET)
        self._truncations: dict[tuple[str, str], list[int | None]] = {}  # (repo, file) -> [n_bytes, times left]
        self._etags: dict[Path, tuple[int, int, str]] = {}  # path -> (size, mtime_ns, sha256)
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------------------------------ lifecycle
    def start(self) -> LocalHub:
        """Bind 127.0.0.1 on a free port and serve from a daemon thread; returns ``self``."""
        if self._server is not None:
            return self
        server = _Server((HOST, 0), _Handler)
        server.hub = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"local-hub-{server.server_address[1]}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent); the port is then refused."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> LocalHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port served on (only while started)."""
        if self._server is None:
            raise RuntimeError("LocalHub is not started: call start() or use it as a context manager.")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The endpoint, e.g. ``http://127.0.0.1:43117`` (what ``HF_ENDPOINT`` should be)."""
        return f"http://{HOST}:{self.port}"

    # ------------------------------------------------------------------------------------------------ content
    def repo_dir(self, repo_id: str) -> Path:
        """The folder a repo is served from (it exists once a file was added or ``create_repo`` was called)."""
        org, name = split_repo_id(repo_id)
        return self.root / org / name

    def path(self, repo_id: str, filename: str) -> Path:
        """Where ``filename`` of ``repo_id`` lives (big builders write there directly, then call :meth:`add`)."""
        parts = [_check_part(p, "filename") for p in filename.split("/")]
        return self.repo_dir(repo_id).joinpath(*parts)

    def create_repo(self, repo_id: str) -> Path:
        """Make an (empty) repo exist: its missing files then answer EntryNotFound rather than RepoNotFound."""
        folder = self.repo_dir(repo_id)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def add(self, repo_id: str, filename: str, data: bytes | os.PathLike) -> Path:
        """Serve ``data`` (bytes, or a file to copy; a file already at :meth:`path` stays) as ``repo_id/filename``.

        The sha256 ETag is computed here, so the first ``HEAD`` of a big file is answered at once."""
        dest = self.path(repo_id, filename)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, (bytes, bytearray, memoryview)):
            dest.write_bytes(bytes(data))
        elif Path(data).resolve() != dest.resolve():
            shutil.copyfile(data, dest)
        self._etag(dest)
        return dest

    def remove(self, repo_id: str, filename: str) -> None:
        """Stop serving a file (the repo stays, so it then answers EntryNotFound)."""
        dest = self.path(repo_id, filename)
        dest.unlink(missing_ok=True)
        with self._lock:
            self._etags.pop(dest, None)

    def truncate(self, repo_id: str, filename: str, n_bytes: int, times: int | None = None) -> None:
        """Make ``GET`` of a file send the headers of the full response but stop after byte offset ``n_bytes`` of the
        file, then close the connection. ``times``: how many ``GET`` requests are cut (None: all of them; 1 lets the
        client's resume with ``Range`` succeed). ``HEAD`` is unaffected."""
        if n_bytes < 0:
            raise ValueError(f"n_bytes must be >= 0, got {n_bytes}")
        with self._lock:
            self._truncations[(repo_id, filename)] = [n_bytes, times]

    def clear_truncations(self) -> None:
        """Serve every file whole again."""
        with self._lock:
            self._truncations.clear()

    def etag(self, repo_id: str, filename: str) -> str:
        """The sha256 hex digest the server gives as ETag (the name of the blob in a huggingface_hub cache)."""
        return self._etag(self.path(repo_id, filename))

    def _etag(self, path: Path) -> str:
        """sha256 of a file, cached while its size and mtime stay the same."""
        stat = path.stat()
        with self._lock:
            known = self._etags.get(path)
        if known and known[:2] == (stat.st_size, stat.st_mtime_ns):
            return known[2]
        digest = hashlib.sha256()
        with path.open("rb") as f:
            while block := f.read(CHUNK * 8):
                digest.update(block)
        with self._lock:
            self._etags[path] = (stat.st_size, stat.st_mtime_ns, digest.hexdigest())
        return digest.hexdigest()

    def _take_truncation(self, repo_id: str, filename: str) -> int | None:
        """The byte offset at which this GET stops, or None (counts the use down)."""
        with self._lock:
            rule = self._truncations.get((repo_id, filename))
            if rule is None:
                return None
            n_bytes, left = rule
            if left is not None:
                if left <= 0:
                    return None
                rule[1] = left - 1
            return n_bytes

    # ------------------------------------------------------------------------------------------------ HTTP
    def _handle(self, req: _Handler, head: bool) -> None:
        """Route one request: a file under ``/resolve/``, the agent registry, or 404."""
        path = urlsplit(req.path).path
        with self._lock:
            self.requests.append((req.command, unquote(path)))
        req.close_connection = True
        try:
            if path == "/api/agent-harnesses":
                self._send_json(req, 200, _AGENT_REGISTRY, head=head)
                return
            match = _RESOLVE.match(path)
            if not match:
                self._send_json(req, 404, {"error": "Not found"}, head=head)
                return
            org, name, revision, filename = (unquote(g) for g in match.groups())
            self._serve_file(req, f"{org}/{name}", revision, filename, head)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away (e.g. it gave up on a truncated body)

    def _serve_file(self, req: _Handler, repo_id: str, revision: str, filename: str, head: bool) -> None:
        """Answer HEAD/GET of one file, with the hub's headers and error codes."""
        try:
            repo_dir = self.repo_dir(repo_id)
        except ValueError:
            self._send_error(req, 404, "RepoNotFound", "Repository not found", head)
            return
        try:
            file_path: Path | None = self.path(repo_id, filename)
        except ValueError:  # "..", empty or odd path components: nothing outside the repo folder is served
            file_path = None
        if not repo_dir.is_dir():
            self._send_error(req, 404, "RepoNotFound", "Repository not found", head)
            return
        if revision not in ("main", COMMIT):
            self._send_error(req, 404, "RevisionNotFound", f"Invalid rev id: {revision}", head)
            return
        if file_path is None or not file_path.is_file():
            self._send_error(req, 404, "EntryNotFound", "Entry not found", head, commit=True)
            return
        size = file_path.stat().st_size
        etag = f'"{self._etag(file_path)}"'
        try:
            byte_range = _parse_range(req.headers.get("Range"), size)
        except ValueError:
            req.send_response(416)
            req.send_header("Content-Range", f"bytes */{size}")
            req.send_header("Content-Length", "0")
            req.send_header("Connection", "close")
            req.end_headers()
            return
        start, end = byte_range if byte_range and not head else (0, size - 1)
        req.send_response(206 if byte_range and not head else 200)
        for key, value in (("X-Repo-Commit", COMMIT), ("ETag", etag), ("X-Linked-Etag", etag),
                           ("X-Linked-Size", str(size)), ("Accept-Ranges", "bytes"),
                           ("Content-Type", "application/octet-stream"), ("Content-Length", str(end - start + 1)),
                           ("Connection", "close")):
            req.send_header(key, value)
        if byte_range and not head:
            req.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        req.end_headers()
        if head:
            return
        stop_at = self._take_truncation(repo_id, filename)
        last = end if stop_at is None else min(end, stop_at - 1)  # inclusive
        with self._lock:
            self.downloads.append((repo_id, filename))
        with file_path.open("rb") as f:
            f.seek(start)
            left = last - start + 1
            while left > 0:
                block = f.read(min(CHUNK, left))
                if not block:
                    break
                req.wfile.write(block)
                left -= len(block)
        req.wfile.flush()

    def _send_error(self, req: _Handler, status: int, code: str, message: str, head: bool,
                    commit: bool = False) -> None:
        """A hub error: ``X-Error-Code`` / ``X-Error-Message`` headers and a JSON body."""
        extra = {"X-Error-Code": code, "X-Error-Message": message}
        if commit:
            extra["X-Repo-Commit"] = COMMIT
        self._send_json(req, status, {"error": message}, head=head, headers=extra)

    @staticmethod
    def _send_json(req: _Handler, status: int, body: object, head: bool,
                   headers: Mapping[str, str] | None = None) -> None:
        """A JSON response (headers only for HEAD)."""
        data = json.dumps(body).encode()
        req.send_response(status)
        for key, value in {**(headers or {}), "Content-Type": "application/json", "Content-Length": str(len(data)),
                           "Connection": "close"}.items():
            req.send_header(key, value)
        req.end_headers()
        if not head:
            req.wfile.write(data)


# ---------------------------------------------------------------------------------------------- pointing at it
def hub_env(hub: LocalHub, cache_dir: os.PathLike | str) -> dict[str, str]:
    """Environment overrides that point nada (and huggingface_hub, when imported afresh) at ``hub``.

    Merge into a child's environment: ``env={**os.environ, **hub_env(hub, cache)}``. ``HF_HUB_OFFLINE`` and
    ``NADA_OFFLINE`` are ``"0"`` (false for both readers, and it overrides ``TRANSFORMERS_OFFLINE``)."""
    no_proxy = ",".join(p for p in (os.environ.get("NO_PROXY") or os.environ.get("no_proxy"), HOST, "localhost") if p)
    return {
        "HF_ENDPOINT": hub.url,
        "NADA_CACHE": str(cache_dir),
        "HF_HUB_OFFLINE": "0",
        "NADA_OFFLINE": "0",
        "HF_HUB_DISABLE_TELEMETRY": "1",  # also skips the /api/agent-harnesses request
        "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",  # never send a user's token, even to 127.0.0.1
        "HF_HUB_DISABLE_XET": "1",  # exists in 2.4.0; the server sends no xet headers anyway
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_ETAG_TIMEOUT": str(ETAG_TIMEOUT_S),
        "HF_HUB_DOWNLOAD_TIMEOUT": str(DOWNLOAD_TIMEOUT_S),
        "NO_PROXY": no_proxy,
        "no_proxy": no_proxy,
    }


def hub_constants(hub: LocalHub) -> dict[str, object]:
    """The ``huggingface_hub.constants`` values that :func:`hub_env` would give a freshly imported huggingface_hub."""
    return {
        "ENDPOINT": hub.url,
        "HUGGINGFACE_CO_URL_TEMPLATE": hub.url + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_HUB_OFFLINE": False,
        "HF_HUB_DISABLE_TELEMETRY": True,
        "HF_HUB_DISABLE_IMPLICIT_TOKEN": True,
        "HF_HUB_DISABLE_XET": True,
        "HF_HUB_ETAG_TIMEOUT": ETAG_TIMEOUT_S,
        "HF_HUB_DOWNLOAD_TIMEOUT": DOWNLOAD_TIMEOUT_S,
    }


def patch_hub_constants(monkeypatch: Any, hub: LocalHub, cache_dir: os.PathLike | str | None = None) -> None:
    """In-process: point huggingface_hub and nada at ``hub`` with pytest's ``monkeypatch`` (undone after the test).

    Sets the :func:`hub_env` variables (``NADA_CACHE`` only when ``cache_dir`` is given) and the
    :func:`hub_constants` attributes of ``huggingface_hub.constants``."""
    from huggingface_hub import constants  # imported here: importing it reads the environment once

    env = hub_env(hub, cache_dir if cache_dir is not None else "")
    if cache_dir is None:
        env.pop("NADA_CACHE")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for key, value in hub_constants(hub).items():
        monkeypatch.setattr(constants, key, value)


@contextmanager
def hub_patched(hub: LocalHub, cache_dir: os.PathLike | str | None = None) -> Iterator[LocalHub]:
    """:func:`patch_hub_constants` without pytest: a context manager that restores the environment and constants."""
    from huggingface_hub import constants

    env = hub_env(hub, cache_dir if cache_dir is not None else "")
    if cache_dir is None:
        env.pop("NADA_CACHE")
    saved_env = {key: os.environ.get(key) for key in env}
    saved_constants = {key: getattr(constants, key) for key in hub_constants(hub)}
    try:
        os.environ.update(env)
        for key, value in hub_constants(hub).items():
            setattr(constants, key, value)
        yield hub
    finally:
        for key, value in saved_constants.items():
            setattr(constants, key, value)
        for key, old in saved_env.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
