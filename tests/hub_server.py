"""A loopback Hugging Face Hub: the few API routes huggingface_hub uses to create a repo, commit files (NDJSON, regular
uploads only), describe a revision, list a tree and resolve files; and for dataset repos (`add_dataset`) what
`datasets` streaming asks: info, tree, paths-info and resolve with HTTP Range requests. For tests, which cannot reach
the real Hub.

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
    # dataset repos, as `datasets` streaming reads them: info, tree, paths-info, and resolve with Range requests
    ("GET", re.compile(rf"^/api/datasets/{REPO}(?:/revision/(?P<rev>[^/]+))?$"), "dataset_info"),
    ("GET", re.compile(rf"^/api/datasets/{REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$"), "dataset_tree"),
    ("POST", re.compile(rf"^/api/datasets/{REPO}/paths-info/(?P<rev>[^/]+)$"), "dataset_paths_info"),
    ("HEAD", re.compile(rf"^/datasets/{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$"), "dataset_resolve"),
    ("GET", re.compile(rf"^/datasets/{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$"), "dataset_resolve"),
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
        self.datasets: dict[str, Repo] = {}  # filled by `add_dataset`
        self.failing_commits = 0
        self.validated: list[str] = []
        self.requests: list[tuple[str, str]] = []
        self.ranges: list[tuple[str, int, int]] = []  # the Range requests answered (path, first byte, last byte)
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
                arguments = {"body": body, **match.groupdict()}
                if name == "dataset_resolve":
                    arguments["range_header"] = handler.headers.get("Range")
                status, headers, payload = getattr(self, name)(**arguments)
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

    # ----- dataset repos -----

    def add_dataset(self, repo_id: str, files: dict[str, bytes]) -> None:
        """A dataset repo holding `files` (path -> bytes), in one commit."""
        repo = Repo()
        repo.files = dict(files)
        repo.commits.append(hashlib.sha1("\n".join(sorted(files)).encode()).hexdigest())
        self.datasets[repo_id] = repo

    def dataset_info(self, body: bytes, repo: str, rev: str | None = None):
        target = self.datasets.get(repo)
        if target is None:
            return self._missing_repo()
        siblings = [{"rfilename": path, "size": len(data)} for path, data in sorted(target.files.items())]
        return 200, {}, {"id": repo, "sha": target.sha, "private": False, "gated": False, "disabled": False,
                         "siblings": siblings, "tags": [], "cardData": {}}  # fmt: skip

    def _entries(self, target: Repo, paths):
        files = target.files
        folders = sorted({"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)})
        entries = [{"type": "directory", "path": folder, "oid": hashlib.sha1(folder.encode()).hexdigest(), "size": 0}
                   for folder in folders if folder in paths]  # fmt: skip
        entries += [{"type": "file", "path": p, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                    for p, data in sorted(files.items()) if p in paths]  # fmt: skip
        return entries

    def dataset_tree(self, body: bytes, repo: str, rev: str, path: str | None = None):
        target = self.datasets.get(repo)
        if target is None:
            return self._missing_repo()
        prefix = f"{path.rstrip('/')}/" if path else ""
        names = {p for p in target.files if p.startswith(prefix)}
        names |= {"/".join(p.split("/")[:i]) for p in names for i in range(1, p.count("/") + 1)}
        return 200, {}, self._entries(target, {n for n in names if n.startswith(prefix)})

    def dataset_paths_info(self, body: bytes, repo: str, rev: str):
        target = self.datasets.get(repo)
        if target is None:
            return self._missing_repo()
        text = body.decode()
        try:
            paths = json.loads(text)["paths"]
        except (ValueError, KeyError):  # form-encoded: paths=a&paths=b
            from urllib.parse import parse_qs

            paths = parse_qs(text).get("paths", [])
        return 200, {}, self._entries(target, set(paths))

    def dataset_resolve(self, body: bytes, repo: str, rev: str, path: str, range_header: str | None = None):
        target = self.datasets.get(repo)
        if target is None:
            return self._missing_repo()
        if path not in target.files:
            return 404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": target.sha}, {"error": "Entry not found"}
        data = target.files[path]
        headers = {"X-Repo-Commit": target.sha, "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                   "Accept-Ranges": "bytes"}  # fmt: skip
        match = re.match(r"bytes=(\d*)-(\d*)$", range_header or "")
        if not match:
            return 200, headers, data
        first, last = match.groups()
        if first == "":  # the last N bytes
            start, end = max(len(data) - int(last), 0), len(data) - 1
        else:
            start, end = int(first), min(int(last) if last else len(data) - 1, len(data) - 1)
        self.ranges.append((path, start, end))
        return 206, {**headers, "Content-Range": f"bytes {start}-{end}/{len(data)}"}, data[start : end + 1]
