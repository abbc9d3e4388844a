"""A loopback HTTP server that speaks the Hugging Face Hub's resolve protocol, plus plain mirror URLs.

Tests point the real ``huggingface_hub`` client at it (``HF_ENDPOINT`` or ``endpoint=``); nothing is
monkeypatched. Like the real Hub, ``HEAD/GET /{repo_id}/resolve/{revision}/{filename}`` answers an
LFS file with a 302 to a CDN on another origin (here ``localhost`` instead of ``127.0.0.1``) carrying
``X-Repo-Commit``, ``X-Linked-Etag`` (the sha256) and ``X-Linked-Size``; the CDN URL serves the bytes.
Errors use the Hub's ``X-Error-Code`` header (RepoNotFound, RevisionNotFound, EntryNotFound).

Usage::

    with HubServer() as hub:
        rev = hub.add_file("org/repo", "model.safetensors", data)              # returns the commit
        hub.add_file("org/repo", "bad.safetensors", data, mode="html")         # or wrong-bytes, truncated, 404, 500
        url = hub.add_mirror("model.safetensors", data)                        # plain http URL on loopback
        hf_hub_download("org/repo", "model.safetensors", revision=rev, endpoint=hub.endpoint, cache_dir=...)

or the ``hub_server`` fixture (``from hub_server import hub_server`` in a test module).
"""

from __future__ import annotations

import hashlib
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, unquote, urlsplit

import pytest

MODES = ("ok", "wrong-bytes", "html", "truncated", "cut", "404", "500")
HTML_PAGE = (b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head>"
             b"<body><p>Please sign in to continue.</p></body></html>\n")


@dataclass
class Served:
    """One file the server offers; ``mode`` says how it misbehaves (``ok``: it does not)."""

    data: bytes
    mode: str = "ok"
    advertised: bytes = field(default=b"")  # the bytes the metadata describes (sha256 / size)

    def body(self) -> bytes:
        """The bytes actually sent on GET."""
        if self.mode == "wrong-bytes":
            return bytes(b ^ 0xFF for b in self.data[:64]) + self.data[64:]
        if self.mode == "html":
            return HTML_PAGE
        if self.mode in ("truncated", "cut"):
            return self.data[: max(1, len(self.data) // 2)]
        return self.data


def fake_commit(repo_id: str, n: int) -> str:
    return hashlib.sha1(f"{repo_id}@{n}".encode()).hexdigest()


class HubServer:
    """Serve files per (repo_id, revision, filename) like the Hub, and plain files like a mirror."""

    def __init__(self) -> None:
        self.repos: dict[str, dict[str, dict[str, Served]]] = {}  # repo -> commit -> filename -> file
        self.branches: dict[str, dict[str, str]] = {}  # repo -> branch -> commit
        self.mirror: dict[str, Served] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, in order
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self.port: int | None = None

    # ------------------------------------------------------------------ content
    def add_file(self, repo_id: str, filename: str, data: bytes, *, revision: str | None = None,
                 mode: str = "ok", branch: str = "main") -> str:
        """Add ``filename`` to ``repo_id`` in a new commit (or in ``revision``); return the commit hash."""
        _check_mode(mode)
        commits = self.repos.setdefault(repo_id, {})
        if revision is None:
            revision = fake_commit(repo_id, len(commits))
            previous = self.branches.get(repo_id, {}).get(branch)
            commits[revision] = dict(commits.get(previous, {})) if previous else {}
            self.branches.setdefault(repo_id, {})[branch] = revision
        commits.setdefault(revision, {})[filename] = Served(data, mode, data)
        return revision

    def add_mirror(self, name: str, data: bytes, *, mode: str = "ok") -> str:
        """Serve ``data`` at a plain URL (GET only, no Hub headers); return the URL."""
        _check_mode(mode)
        self.mirror[name] = Served(data, mode, data)
        return f"{self.endpoint}/mirror/{quote(name)}"

    # ------------------------------------------------------------------ lifecycle
    @property
    def endpoint(self) -> str:
        if self.port is None:
            raise RuntimeError("HubServer is not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def cdn(self) -> str:  # another origin for the same server, like cdn-lfs.huggingface.co
        return f"http://localhost:{self.port}"

    def start(self, port: int = 0) -> "HubServer":
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), _make_handler(self))
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; the port refuses connections afterwards (the network is 'gone')."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        for conn in list(self._connections):  # kept-alive client connections must die too
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()
        self._connections.clear()

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ protocol
    def resolve(self, repo_id: str, revision: str, filename: str):
        """(status, headers, served) for a resolve request, with the Hub's error codes."""
        if repo_id not in self.repos:
            return 404, {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"}, None
        commit = self.branches.get(repo_id, {}).get(revision, revision)
        if commit not in self.repos[repo_id]:
            return 404, {"X-Error-Code": "RevisionNotFound", "X-Error-Message": "Invalid rev id"}, None
        served = self.repos[repo_id][commit].get(filename)
        if served is None or served.mode == "404":
            return 404, {"X-Error-Code": "EntryNotFound", "X-Error-Message": "Entry not found",
                         "X-Repo-Commit": commit}, None
        if served.mode == "500":
            return 500, {}, None
        sha = hashlib.sha256(served.advertised).hexdigest()
        headers = {
            "X-Repo-Commit": commit,
            "X-Linked-Etag": f'"{sha}"',
            "X-Linked-Size": str(len(served.advertised)),
            "ETag": f'W/"{hashlib.sha1(served.advertised).hexdigest()}"',
            "Location": f"{self.cdn}/cdn/{quote(repo_id)}/{commit}/{quote(filename)}",
        }
        if served.mode == "truncated":  # the server itself holds a truncated file, consistently
            headers["X-Linked-Size"] = str(len(served.body()))
        return 302, headers, served


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def _make_handler(server: HubServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep test output quiet
            pass

        def setup(self) -> None:
            super().setup()
            server._connections.add(self.connection)

        def finish(self) -> None:
            server._connections.discard(self.connection)
            super().finish()

        def do_HEAD(self) -> None:
            self._handle(send_body=False)

        def do_GET(self) -> None:
            self._handle(send_body=True)

        def _handle(self, send_body: bool) -> None:
            path = urlsplit(self.path).path
            server.requests.append((self.command, path))
            parts = [unquote(p) for p in path.strip("/").split("/")]
            if len(parts) >= 5 and parts[2] == "resolve":
                repo_id, revision, filename = f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:])
                status, headers, _ = server.resolve(repo_id, revision, filename)
                return self._reply(status, headers, b"", send_body=False)
            if len(parts) >= 5 and parts[0] == "cdn":
                repo_id, commit, filename = f"{parts[1]}/{parts[2]}", parts[3], "/".join(parts[4:])
                served = server.repos.get(repo_id, {}).get(commit, {}).get(filename)
                return self._serve(served, send_body)
            if len(parts) >= 2 and parts[0] == "mirror":
                return self._serve(server.mirror.get("/".join(parts[1:])), send_body)
            return self._reply(404, {}, b"not found\n", send_body)

        def _serve(self, served: Served | None, send_body: bool) -> None:
            if served is None or served.mode == "404":
                return self._reply(404, {"Content-Type": "text/html"}, b"<html>404</html>", send_body)
            if served.mode == "500":
                return self._reply(500, {}, b"", send_body)
            body = served.body()
            ctype = "text/html; charset=utf-8" if served.mode == "html" else "application/octet-stream"
            if served.mode == "cut":  # promise the full length, send half, drop the connection
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(served.data)))
                self.send_header("Connection", "close")
                self.end_headers()
                if send_body:
                    self.wfile.write(body)
                self.close_connection = True
                return None
            return self._reply(200, {"Content-Type": ctype}, body, send_body)

        def _reply(self, status: int, headers: dict[str, str], body: bytes, send_body: bool) -> None:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if send_body and body:
                self.wfile.write(body)

    return Handler


@pytest.fixture
def hub_server():
    """A started :class:`HubServer`, stopped after the test."""
    with HubServer() as hub:
        yield hub
