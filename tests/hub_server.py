"""A small Hugging Face Hub look-alike on 127.0.0.1, for testing downloads with the real huggingface_hub client.

It speaks the part of the hub protocol huggingface_hub 2.x uses to fetch files:

    GET  /api/models/{repo}/revision/{rev}            -> {"id", "sha", "siblings"}     (HfApi.repo_info)
    GET  /api/models/{repo}/tree/{rev}?recursive=...  -> [{"type", "path", "oid", "size", "lfs"}]
    HEAD/GET /{repo}/resolve/{rev}/{path}             -> the bytes (regular files), or a 302 to /cdn/{sha256}
                                                         (LFS files), with X-Repo-Commit, ETag / X-Linked-Etag
                                                         and X-Linked-Size as the hub sends them
    GET  /cdn/{sha256}, /static/{name}                -> bytes, honouring `Range: bytes=N-` with a 206

Errors carry the hub's `X-Error-Code` (RepoNotFound, RevisionNotFound, EntryNotFound) so the client raises its
typed errors. Tests can make a repository private, a file missing, a file corrupt, or a transfer cut off midway
(after which the server answers 503 for it until `restore()`). Every request is logged. The server binds an
ephemeral port and stops when the `with` block ends, or by itself after `lifetime` seconds at the latest.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pth", ".pt", ".torchscript")


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class FakeRepo:
    """One model repository: its files at a single commit."""

    files: dict[str, bytes]
    commit: str = ""
    token: str | None = None

    def __post_init__(self) -> None:
        if not self.commit:
            digest = hashlib.sha1()
            for path in sorted(self.files):
                digest.update(path.encode() + b"\0" + hashlib.sha256(self.files[path]).digest())
            self.commit = digest.hexdigest()

    @staticmethod
    def is_lfs(path: str) -> bool:
        return path.endswith(LFS_SUFFIXES)


@dataclass
class Logged:
    method: str
    path: str
    range: str | None
    status: int
    body_bytes: int


@dataclass
class FakeHub:
    repos: dict[str, FakeRepo]
    static: dict[str, bytes] = field(default_factory=dict)
    lifetime: float = 300.0
    log: list[Logged] = field(default_factory=list)
    missing: set[tuple[str, str]] = field(default_factory=set)
    corrupt: set[str] = field(default_factory=set)
    cuts: dict[str, int] = field(default_factory=dict)
    down: set[str] = field(default_factory=set)

    # -- controls -------------------------------------------------------------------------------------

    def make_private(self, repo_id: str, token: str) -> None:
        self.repos[repo_id].token = token

    def make_missing(self, repo_id: str, path: str) -> None:
        """Listed in the tree, but /resolve answers 404 EntryNotFound (a mirror that lacks the file)."""
        self.missing.add((repo_id, path))

    def make_corrupt(self, repo_id: str, path: str) -> None:
        """Served with one byte changed and the right length."""
        self.corrupt.add(self._key(repo_id, path))

    def cut_after(self, repo_id: str, path: str, nbytes: int) -> None:
        """The next transfer of this file stops after `nbytes`; later ones get 503 until `restore()`."""
        self.cuts[self._key(repo_id, path)] = nbytes

    def restore(self) -> None:
        self.cuts.clear()
        self.down.clear()

    def _key(self, repo_id: str, path: str) -> str:
        data = self.repos[repo_id].files[path]
        return hashlib.sha256(data).hexdigest() if FakeRepo.is_lfs(path) else f"{repo_id}/{path}"

    # -- log queries ------------------------------------------------------------------------------------

    def file_requests(self) -> list[Logged]:
        """GETs that move file bytes (not API listings, HEADs or redirects)."""
        return [r for r in self.log if r.method == "GET" and not r.path.startswith("/api/") and r.status in (200, 206)]

    def requests_for(self, repo_id: str, path: str) -> list[Logged]:
        data = self.repos[repo_id].files[path]
        cdn = f"/cdn/{hashlib.sha256(data).hexdigest()}"
        resolve = re.compile(rf"^/{re.escape(repo_id)}/resolve/[^/]+/{re.escape(path)}$")
        return [r for r in self.log if r.path == cdn or resolve.match(r.path)]

    # -- lifecycle --------------------------------------------------------------------------------------

    def __enter__(self) -> "FakeHub":
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.timer = threading.Timer(self.lifetime, self.server.shutdown)
        self.timer.daemon = True
        self.timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.timer.cancel()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"


def _handler_for(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - keep test output quiet
            return

        def do_HEAD(self) -> None:
            self._route(head=True)

        def do_GET(self) -> None:
            self._route(head=False)

        # -- routing ----------------------------------------------------------------------------------

        def _route(self, head: bool) -> None:
            url = urlsplit(self.path)
            path = unquote(url.path)
            try:
                if path.startswith("/api/models/"):
                    self._api(path[len("/api/models/"):], parse_qs(url.query))
                elif path.startswith("/cdn/"):
                    sha = path[len("/cdn/"):]
                    data = next((d for r in hub.repos.values() for p, d in r.files.items()
                                 if FakeRepo.is_lfs(p) and hashlib.sha256(d).hexdigest() == sha), None)
                    if data is None:
                        self._error(404, "EntryNotFound", head)
                    else:
                        self._bytes(data, sha, head, {})
                elif path.startswith("/static/") and path[len("/static/"):] in hub.static:
                    name = path[len("/static/"):]
                    self._bytes(hub.static[name], f"static/{name}", head, {})
                elif "/resolve/" in path:
                    self._resolve(path, head)
                else:
                    self._error(404, None, head)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        def _repo(self, repo_id: str, head: bool = False) -> FakeRepo | None:
            repo = hub.repos.get(repo_id)
            if repo is None:
                self._error(404, "RepoNotFound", head)
                return None
            if repo.token is not None and self.headers.get("Authorization") != f"Bearer {repo.token}":
                self._error(401, "RepoNotFound", head, message="Invalid username or password.")
                return None
            return repo

        def _commit(self, repo: FakeRepo, rev: str, head: bool = False) -> str | None:
            if rev in ("main", repo.commit):
                return repo.commit
            self._error(404, "RevisionNotFound", head)
            return None

        # -- API --------------------------------------------------------------------------------------

        def _api(self, rest: str, query: dict) -> None:
            match = re.match(r"^(?P<repo>[^/]+/[^/]+)/(?P<kind>revision|tree)/(?P<rev>[^/]+)(?:/(?P<sub>.*))?$", rest)
            if match is None:
                self._error(404, None, False)
                return
            repo = self._repo(match["repo"])
            if repo is None:
                return
            commit = self._commit(repo, match["rev"])
            if commit is None:
                return
            if match["kind"] == "revision":
                body = {"id": match["repo"], "sha": commit, "private": repo.token is not None,
                        "siblings": [{"rfilename": p} for p in sorted(repo.files)]}
            else:
                body = self._tree(repo, match["sub"] or "", query.get("recursive", ["false"])[0] == "True"
                                  or query.get("recursive", ["false"])[0] == "true")
            self._json(200, body)

        def _tree(self, repo: FakeRepo, sub: str, recursive: bool) -> list[dict]:
            prefix = f"{sub.strip('/')}/" if sub else ""
            entries, folders = [], set()
            for path in sorted(repo.files):
                if not path.startswith(prefix):
                    continue
                rest = path[len(prefix):]
                parts = rest.split("/")
                for depth in range(1, len(parts)):
                    folders.add(prefix + "/".join(parts[:depth]))
                if not recursive and len(parts) > 1:
                    continue
                data = repo.files[path]
                entry = {"type": "file", "path": path, "size": len(data), "oid": git_blob_id(data)}
                if FakeRepo.is_lfs(path):
                    sha = hashlib.sha256(data).hexdigest()
                    pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {len(data)}\n"
                    entry["oid"] = git_blob_id(pointer.encode())
                    entry["lfs"] = {"oid": sha, "size": len(data), "pointerSize": len(pointer)}
                entries.append(entry)
            if not recursive:
                folders = {f for f in folders if "/" not in f[len(prefix):]}
            entries += [{"type": "directory", "path": f, "size": 0, "oid": hashlib.sha1(f.encode()).hexdigest()}
                        for f in sorted(folders)]
            return entries

        # -- files ------------------------------------------------------------------------------------

        def _resolve(self, path: str, head: bool) -> None:
            repo_id, _, rest = path.lstrip("/").partition("/resolve/")
            rev, _, file_path = rest.partition("/")
            repo = self._repo(repo_id, head)
            if repo is None:
                return
            commit = self._commit(repo, rev, head)
            if commit is None:
                return
            if file_path not in repo.files or (repo_id, file_path) in hub.missing:
                self._error(404, "EntryNotFound", head, extra={"X-Repo-Commit": commit})
                return
            data = repo.files[file_path]
            if FakeRepo.is_lfs(file_path):
                sha = hashlib.sha256(data).hexdigest()
                self._send(302, head, b"", {
                    "Location": f"http://{self.headers['Host']}/cdn/{sha}",
                    "X-Repo-Commit": commit, "ETag": f'"{git_blob_id(data)}"', "X-Linked-Etag": f'"{sha}"',
                    "X-Linked-Size": str(len(data)), "Content-Length": "0"})
                return
            self._bytes(data, f"{repo_id}/{file_path}", head,
                        {"X-Repo-Commit": commit, "ETag": f'"{git_blob_id(data)}"'})

        def _bytes(self, data: bytes, key: str, head: bool, headers: dict[str, str]) -> None:
            """Serve `data` (or its tail for `Range: bytes=N-`), applying the corrupt / cut / down controls."""
            if key in hub.down and not head:
                self._error(503, None, head)
                return
            if key in hub.corrupt:
                data = data[:-1] + bytes([data[-1] ^ 0xFF])
            start = 0
            wanted = self.headers.get("Range")
            if wanted and not head:
                match = re.match(r"^bytes=(\d+)-$", wanted.strip())
                if match is None or int(match[1]) >= len(data):
                    self._send(416, head, b"", {"Content-Range": f"bytes */{len(data)}", "Content-Length": "0"})
                    return
                start = int(match[1])
            body = data[start:]
            extra = {**headers, "Accept-Ranges": "bytes", "Content-Length": str(len(body)),
                     "Content-Type": "application/octet-stream"}
            if start:
                extra["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            cut = None if head else hub.cuts.pop(key, None)
            if cut is not None:
                hub.down.add(key)
                self._send(206 if start else 200, head, body[:cut], extra, truncated=True)
                return
            self._send(206 if start else 200, head, body, extra)

        # -- plumbing ---------------------------------------------------------------------------------

        def _json(self, status: int, body: object) -> None:
            payload = json.dumps(body).encode()
            headers = {"Content-Type": "application/json", "Content-Length": str(len(payload))}
            self._send(status, False, payload, headers)

        def _error(self, status: int, code: str | None, head: bool, message: str | None = None,
                   extra: dict[str, str] | None = None) -> None:
            payload = json.dumps({"error": message or code or "error"}).encode()
            headers = {"Content-Type": "application/json", "Content-Length": str(len(payload)), **(extra or {})}
            if code:
                headers["X-Error-Code"] = code
            if message:
                headers["X-Error-Message"] = message
            self._send(status, head, payload, headers)

        def _send(self, status: int, head: bool, body: bytes, headers: dict[str, str], truncated: bool = False) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            if truncated:
                self.send_header("Connection", "close")
            self.end_headers()
            sent = 0
            if not head:
                self.wfile.write(body)
                sent = len(body)
            hub.log.append(Logged(self.command, unquote(urlsplit(self.path).path), self.headers.get("Range"),
                                  status, sent))
            if truncated:
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True

    return Handler
