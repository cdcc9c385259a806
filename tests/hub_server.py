"""A loopback Hugging Face Hub: the few API routes huggingface_hub uses to create a repo, commit files (NDJSON, regular
uploads only), describe a revision, list a tree and resolve files. For tests, which cannot reach the real Hub.

Start it with `LoopbackHub()` (a context manager); its `endpoint` goes into `HF_ENDPOINT` of a subprocess (the variable
is read when huggingface_hub is imported). `failing_commits = n` makes the next n commit requests answer 500 after
reading their body (huggingface_hub retries a commit 5 times, waiting 1 + 2 + 4 + 8 + 8 s).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

import yaml

REPO = r"(?P<repo>[^/]+/[^/]+)"
ROUTES = [
    ("POST", re.compile(r"^/api/repos/create$"), "create"),
    ("POST", re.compile(r"^/api/validate-yaml$"), "validate_yaml"),
    ("POST", re.compile(rf"^/api/models/{REPO}/preupload/(?P<rev>[^/]+)$"), "preupload"),
    ("POST", re.compile(rf"^/api/models/{REPO}/commit/(?P<rev>[^/]+)$"), "commit"),
    ("GET", re.compile(rf"^/api/models/{REPO}(?:/revision/(?P<rev>[^/]+))?$"), "info"),
    ("GET", re.compile(rf"^/api/models/{REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$"), "tree"),
    ("HEAD", re.compile(rf"^/{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$"), "resolve"),
    ("GET", re.compile(rf"^/{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$"), "resolve"),
]


class Repo:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.commits: list[str] = []

    @property
    def sha(self) -> str:
        return self.commits[-1] if self.commits else "0" * 40


class LoopbackHub:
    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.failing_commits = 0
        self.validated: list[str] = []
        self.requests: list[tuple[str, str]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the client's connection pool expects

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                hub._dispatch(self, "GET")

            def do_HEAD(self) -> None:
                hub._dispatch(self, "HEAD")

            def do_POST(self) -> None:
                hub._dispatch(self, "POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LoopbackHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ----- plumbing -----

    def _dispatch(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        path = unquote(urlparse(handler.path).path)
        self.requests.append((method, path))
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        for route_method, pattern, name in ROUTES:
            match = pattern.match(path)
            if route_method == method and match:
                status, headers, payload = getattr(self, name)(body=body, **match.groupdict())
                break
        else:
            status, headers, payload = 404, {"X-Error-Code": "RepoNotFound"}, b'{"error": "no such route"}'
        if isinstance(payload, (dict, list)):
            payload = json.dumps(payload).encode()
            headers = {"Content-Type": "application/json", **headers}
        handler.send_response(status)
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        if method != "HEAD":
            handler.wfile.write(payload)

    def _repo(self, repo: str) -> Repo | None:
        return self.repos.get(repo)

    @staticmethod
    def _missing_repo():
        return 404, {"X-Error-Code": "RepoNotFound"}, {"error": "Repository not found"}

    # ----- routes -----

    def create(self, body: bytes):
        request = json.loads(body)
        repo_id = f"{request['organization']}/{request['name']}" if request.get("organization") else request["name"]
        if repo_id in self.repos:
            return 409, {}, {"error": "You already created this model repo", "url": f"{self.endpoint}/{repo_id}"}
        self.repos[repo_id] = Repo()
        return 200, {}, {"url": f"{self.endpoint}/{repo_id}"}

    def validate_yaml(self, body: bytes):
        """Like the Hub: the README's YAML block must parse into a mapping, and a `model-index` must be a list of
        models with results. The validated READMEs are kept in `validated`."""
        content = json.loads(body)["content"]
        self.validated.append(content)
        match = re.match(r"^---\n(.*?)\n---\n", content, flags=re.S)
        try:
            metadata = yaml.safe_load(match.group(1)) if match else {}
        except yaml.YAMLError as error:
            return 400, {}, {"errors": [{"message": f"YAML: {error}"}], "warnings": []}
        if not isinstance(metadata, dict):
            return 400, {}, {"errors": [{"message": "the metadata is not a mapping"}], "warnings": []}
        index = metadata.get("model-index", [])
        if not isinstance(index, list) or not all(isinstance(m, dict) and "results" in m for m in index):
            return 400, {}, {"errors": [{"message": "model-index: a list of {name, results}"}], "warnings": []}
        return 200, {}, {"errors": [], "warnings": []}

    def preupload(self, body: bytes, repo: str, rev: str):
        if self._repo(repo) is None:
            return self._missing_repo()
        files = json.loads(body)["files"]
        return 200, {}, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                   for f in files]}  # fmt: skip

    def commit(self, body: bytes, repo: str, rev: str):
        target = self._repo(repo)
        if target is None:
            return self._missing_repo()
        if self.failing_commits:
            self.failing_commits -= 1
            return 500, {}, {"error": "Internal Error (loopback: a failure injected by the test)"}
        files = dict(target.files)
        for line in body.splitlines():
            item = json.loads(line)
            if item["key"] == "file":
                files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            elif item["key"] == "deletedFile":
                files.pop(item["value"]["path"], None)
            elif item["key"] != "header":
                return 400, {}, {"error": f"loopback hub: unsupported commit operation {item['key']!r}"}
        target.files = files
        sha = hashlib.sha1(body + target.sha.encode()).hexdigest()
        target.commits.append(sha)
        return 200, {}, {"commitUrl": f"{self.endpoint}/{repo}/commit/{sha}", "commitOid": sha}

    def info(self, body: bytes, repo: str, rev: str | None = None):
        target = self._repo(repo)
        if target is None:
            return self._missing_repo()
        siblings = [{"rfilename": path} for path in sorted(target.files)]
        return 200, {}, {"id": repo, "modelId": repo, "sha": target.sha, "private": False, "siblings": siblings}

    def tree(self, body: bytes, repo: str, rev: str, path: str | None = None):
        target = self._repo(repo)
        if target is None:
            return self._missing_repo()
        prefix = f"{path.rstrip('/')}/" if path else ""
        entries = [{"type": "file", "path": p, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                   for p, data in sorted(target.files.items()) if p.startswith(prefix)]  # fmt: skip
        return 200, {}, entries

    def resolve(self, body: bytes, repo: str, rev: str, path: str):
        target = self._repo(repo)
        if target is None:
            return self._missing_repo()
        if path not in target.files:
            return 404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": target.sha}, {"error": "Entry not found"}
        data = target.files[path]
        headers = {"X-Repo-Commit": target.sha, "ETag": f'"{hashlib.sha256(data).hexdigest()}"'}
        return 200, headers, data
