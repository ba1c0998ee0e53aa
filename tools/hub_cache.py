"""A Hugging Face hub cache laid out by huggingface_hub itself, for studioize's tests.

    hub_cache.py build  --cache DIR --repo ORG/NAME --folder SRC --commit HEX [--ref NAME]...
    hub_cache.py verify --cache DIR --repo ORG/NAME --folder SRC --commit HEX [--ref NAME]...
                        --files F [F ...]

`build` serves the files of SRC as commit HEX of ORG/NAME (branches/tags --ref pointing at it)
from a local HTTP server on 127.0.0.1 that answers the hub's resolve route as huggingface.co
does (X-Repo-Commit, ETag = sha256 for LFS files, git blob sha1 for the others, X-Linked-Etag /
X-Linked-Size, ranges), and downloads every file with the real `hf_hub_download` into DIR: the
blobs, relative snapshot symlinks and refs are huggingface_hub's own. Without --ref the files
are downloaded by commit (no refs file).

`verify` checks a cache that another client (studioize through hf-hub) wrote, with
huggingface_hub's offline API only: `snapshot_download(local_files_only=True)` of each ref
finds snapshots/HEX, `try_to_load_from_cache` finds each of --files there, each snapshot entry
is a relative symlink to blobs/<etag> (etag as above) holding SRC's bytes, `scan_cache_dir`
reports the repo without warnings, and no refs file names a commit.

Both print a JSON summary. Pinned stack: tools/requirements.txt (huggingface_hub comes with
diffusers 0.42.1 / transformers 5.24.0; checked with 2.4.0).
"""

import argparse
import hashlib
import http.server
import json
import os
import re
import sys
import threading
import urllib.parse
from pathlib import Path

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
for proxy in ["http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"]:
    os.environ.pop(proxy, None)

import huggingface_hub  # noqa: E402
from huggingface_hub import scan_cache_dir, snapshot_download, try_to_load_from_cache  # noqa: E402

LFS_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".h5", ".msgpack", ".onnx")


def etag(name: str, data: bytes) -> str:
    """The hub's etag: the sha256 of an LFS file, else the git blob hash."""
    if name.endswith(LFS_SUFFIXES):
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def repo_files(folder: Path) -> dict[str, Path]:
    return {
        p.relative_to(folder).as_posix(): p
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def serve(repo: str, commit: str, refs: list[str], files: dict[str, Path]):
    """A thread serving HEAD/GET /{repo}/resolve/{rev}/{file}; returns (server, endpoint)."""
    revisions = set(refs) | {commit}

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def answer(self, body: bool):
            path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
            prefix = f"/{repo}/resolve/"
            rest = path[len(prefix):] if path.startswith(prefix) else None
            hit = None
            if rest is not None:
                for rev in revisions:
                    if rest.startswith(rev + "/") and rest[len(rev) + 1:] in files:
                        hit = rest[len(rev) + 1:]
            if hit is None:
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = files[hit].read_bytes()
            tag = etag(hit, data)
            start, end = 0, len(data) - 1
            rng = self.headers.get("Range")
            if rng and rng.startswith("bytes="):
                a, _, b = rng[6:].partition("-")
                start, end = int(a or 0), int(b) if b else len(data) - 1
            self.send_response(206 if rng else 200)
            self.send_header("X-Repo-Commit", commit)
            self.send_header("ETag", f'"{tag}"')
            if hit.endswith(LFS_SUFFIXES):
                self.send_header("X-Linked-Etag", f'"{tag}"')
                self.send_header("X-Linked-Size", str(len(data)))
            self.send_header("Accept-Ranges", "bytes")
            if rng:
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            self.send_header("Content-Length", str(end - start + 1))
            self.end_headers()
            if body:
                self.wfile.write(data[start:end + 1])

        def do_HEAD(self):
            self.answer(body=False)

        def do_GET(self):
            self.answer(body=True)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def check_offline(args, files: dict[str, Path], names: list[str]) -> dict:
    """The offline checks shared by build and verify; returns the summary."""
    storage = Path(args.cache) / f"models--{args.repo.replace('/', '--')}"
    snapshot = storage / "snapshots" / args.commit
    for rev in args.ref or [args.commit]:
        found = snapshot_download(
            args.repo,
            revision=rev,
            cache_dir=args.cache,
            local_files_only=True,
            allow_patterns=names,
        )
        assert Path(found) == snapshot, (rev, found, snapshot)
        for name in names:
            cached = try_to_load_from_cache(args.repo, name, cache_dir=args.cache, revision=rev)
            assert cached is not None and Path(cached) == snapshot / name, (rev, name, cached)
    for name in names:
        pointer = snapshot / name
        target = os.readlink(pointer)
        assert not os.path.isabs(target), (name, target)
        data = files[name].read_bytes()
        blob = (pointer.parent / target).resolve()
        assert blob == (storage / "blobs" / etag(name, data)).resolve(), (name, blob)
        assert blob.read_bytes() == data, name
    refs = storage / "refs"
    for ref in sorted(refs.rglob("*")) if refs.exists() else []:
        if ref.is_file():
            rel = ref.relative_to(refs).as_posix()
            assert not re.fullmatch(r"[0-9a-f]{40}", rel), f"refs/{rel} names a commit"
            if rel in (args.ref or []):
                assert ref.read_text() == args.commit, (rel, ref.read_text())
    info = scan_cache_dir(args.cache)
    assert not info.warnings, info.warnings
    [cached_repo] = [r for r in info.repos if r.repo_id == args.repo]
    revisions = {r.commit_hash: r for r in cached_repo.revisions}
    assert args.commit in revisions, revisions.keys()
    assert set(args.ref or []) <= set(revisions[args.commit].refs), revisions[args.commit].refs
    listed = {Path(f.file_path).relative_to(snapshot).as_posix() for f in revisions[args.commit].files}
    assert listed == set(names), sorted(listed ^ set(names))
    return {
        "huggingface_hub": huggingface_hub.__version__,
        "snapshot": str(snapshot),
        "files": names,
        "refs": sorted(revisions[args.commit].refs),
    }


def build(args) -> dict:
    files = repo_files(Path(args.folder))
    server, endpoint = serve(args.repo, args.commit, args.ref or [], files)
    try:
        for rev in args.ref or [args.commit]:
            for name in files:
                huggingface_hub.hf_hub_download(
                    args.repo, name, revision=rev, cache_dir=args.cache, endpoint=endpoint
                )
    finally:
        server.shutdown()
    return check_offline(args, files, list(files))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["build", "verify"])
    parser.add_argument("--cache", required=True)
    parser.add_argument("--repo", required=True)
    parser.add_argument("--folder", required=True)
    parser.add_argument("--commit", required=True)
    parser.add_argument("--ref", action="append")
    parser.add_argument("--files", nargs="+")
    args = parser.parse_args()
    if args.mode == "build":
        summary = build(args)
    else:
        if not args.files:
            parser.error("verify needs --files")
        files = repo_files(Path(args.folder))
        summary = check_offline(args, files, args.files)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
