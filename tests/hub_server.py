"""A local HTTP server that speaks the Hugging Face Hub's file protocol, for tests.

It answers what `huggingface_hub.hf_hub_download` and `snapshot_download`
(hence Keras' `hf://`) ask, for public model repos:

* `HEAD`/`GET /{repo_id}/resolve/{revision}/{filename}`: the file, with
  `X-Repo-Commit`, `ETag` (git blob sha1, or the sha256 for `.h5` files, which
  the Hub keeps in LFS; then also `X-Linked-Etag`/`X-Linked-Size`) and
  `Content-Length`. Missing things are 404s with the Hub's `X-Error-Code`
  (`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`).
* `GET /api/models/{repo_id}/revision/{revision}`: repo info (`sha`, `siblings`).
* `GET /api/models/{repo_id}/tree/{revision}`: the file listing.

Test hooks: `requests` (every request, in order), `fail_next(n, status)` (the
next `n` matching requests get a 5xx), `truncate` (GET bodies cut in half while
HEAD announces the full size) and `tamper(...)` (serve a modified byte).

```python
with HubServer() as hub:
    commit = hub.add_folder("me/model", "export/model")
    hf_hub_download("me/model", "config.json", revision=commit, endpoint=hub.url)
```
"""

import hashlib
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit


def _git_blob_sha1(content):
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def _is_lfs(filename):
    return filename.endswith((".h5", ".keras", ".safetensors", ".bin"))


class HubServer:
    """The server; bound to 127.0.0.1 on a free port, handled in threads."""

    def __init__(self):
        self._lock = threading.Lock()
        self._repos = {}  # repo_id -> {"refs": {branch: sha}, "commits": {sha: {file: bytes}}}
        self.requests = []  # (method, path) of every request
        self._failures = []  # [(status, methods)] consumed by matching requests
        self.truncate = False
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        server.daemon_threads = True
        self._server = server
        self._thread = None

    # -- lifecycle ----------------------------------------------------------
    @property
    def url(self):
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self):
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Stop serving (idempotent): later requests get 'connection refused'."""
        if self._thread is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- content ------------------------------------------------------------
    def add_files(self, repo_id, files, branch="main", commit=None):
        """Commit `{filename: bytes}` as the new head of `branch`; return its sha
        (derived from the content unless given)."""
        if commit is None:
            digest = hashlib.sha1(repo_id.encode())
            for name in sorted(files):
                digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
            commit = digest.hexdigest()
        with self._lock:
            repo = self._repos.setdefault(repo_id, {"refs": {}, "commits": {}})
            repo["commits"][commit] = dict(files)
            repo["refs"][branch] = commit
        return commit

    def add_folder(self, repo_id, folder, branch="main", commit=None):
        files = {}
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    files[name] = f.read()
        return self.add_files(repo_id, files, branch, commit)

    def tamper(self, repo_id, commit, filename, offset=None):
        """Flip one byte of a served file (the middle one by default)."""
        with self._lock:
            content = bytearray(self._repos[repo_id]["commits"][commit][filename])
            index = len(content) // 2 if offset is None else offset
            content[index] ^= 0xFF
            self._repos[repo_id]["commits"][commit][filename] = bytes(content)

    def fail_next(self, n, status=503, methods=("GET", "HEAD")):
        """Answer the next `n` requests whose method is in `methods` with `status`."""
        with self._lock:
            self._failures.extend([(status, tuple(methods))] * n)

    @property
    def request_count(self):
        with self._lock:
            return len(self.requests)

    def reset_requests(self):
        with self._lock:
            self.requests.clear()

    # -- protocol -------------------------------------------------------------
    def _record(self, method, path):
        with self._lock:
            self.requests.append((method, path))
            for i, (status, methods) in enumerate(self._failures):
                if method in methods:
                    del self._failures[i]
                    return status
        return None

    def _resolve(self, repo_id, revision):
        """`(repo, commit)`; either is None when unknown."""
        with self._lock:
            repo = self._repos.get(repo_id)
            if repo is None:
                return None, None
            commit = repo["refs"].get(revision, revision)
            return repo, (commit if commit in repo["commits"] else None)

    def _files(self, repo, commit):
        with self._lock:
            return dict(repo["commits"][commit])


def _handler_for(hub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, *args):  # keep test output clean
            pass

        def _send(self, status, headers=None, body=b"", head=False, length=None):
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body) if length is None else length))
            self.end_headers()
            if not head and body:
                self.wfile.write(body)

        def _error(self, status, code, message, head, extra=None):
            headers = {"Content-Type": "application/json", "X-Error-Message": message}
            if code:
                headers["X-Error-Code"] = code
            headers.update(extra or {})
            self._send(status, headers, json.dumps({"error": message}).encode(), head)

        def do_HEAD(self):
            self._serve(head=True)

        def do_GET(self):
            self._serve(head=False)

        def _serve(self, head):
            method = "HEAD" if head else "GET"
            path = unquote(urlsplit(self.path).path)
            failure = hub._record(method, path)
            if failure is not None:
                return self._error(failure, None, f"injected failure {failure}", head)
            parts = path.strip("/").split("/")
            if parts[:2] == ["api", "models"] and len(parts) >= 6:
                return self._api(parts[2] + "/" + parts[3], parts[4], parts[5], head)
            if len(parts) >= 5 and parts[2] == "resolve":
                return self._resolve_file(parts[0] + "/" + parts[1], parts[3],
                                          "/".join(parts[4:]), head)
            return self._error(404, None, f"no route for {path}", head)

        def _lookup(self, repo_id, revision, head):
            repo, commit = hub._resolve(repo_id, revision)
            if repo is None:
                self._error(404, "RepoNotFound", f"Repository {repo_id} not found", head)
            elif commit is None:
                self._error(404, "RevisionNotFound", f"Revision {revision} not found", head)
            return repo, commit

        def _resolve_file(self, repo_id, revision, filename, head):
            repo, commit = self._lookup(repo_id, revision, head)
            if commit is None:
                return
            files = hub._files(repo, commit)
            if filename not in files:
                return self._error(404, "EntryNotFound", f"{filename} not found", head,
                                   {"X-Repo-Commit": commit})
            content = files[filename]
            headers = {"X-Repo-Commit": commit, "Content-Type": "application/octet-stream",
                       "Accept-Ranges": "none"}
            if _is_lfs(filename):
                sha256 = hashlib.sha256(content).hexdigest()
                headers.update({"ETag": f'"{sha256}"', "X-Linked-Etag": f'"{sha256}"',
                                "X-Linked-Size": str(len(content))})
            else:
                headers["ETag"] = f'"{_git_blob_sha1(content)}"'
            if not head and hub.truncate:
                content = content[: len(content) // 2]
            self._send(200, headers, content, head)

        def _api(self, repo_id, kind, revision, head):
            repo, commit = self._lookup(repo_id, revision, head)
            if commit is None:
                return
            files = hub._files(repo, commit)
            if kind == "revision":
                body = {"id": repo_id, "modelId": repo_id, "sha": commit, "private": False,
                        "siblings": [{"rfilename": name} for name in sorted(files)]}
            elif kind == "tree":
                body = []
                for name in sorted(files):
                    item = {"type": "file", "path": name, "size": len(files[name]),
                            "oid": _git_blob_sha1(files[name])}
                    if _is_lfs(name):
                        item["lfs"] = {"oid": hashlib.sha256(files[name]).hexdigest(),
                                       "size": len(files[name]), "pointerSize": 134}
                    body.append(item)
            else:
                return self._error(404, None, f"no api route {kind}", head)
            self._send(200, {"Content-Type": "application/json"}, json.dumps(body).encode(), head)

    return Handler
