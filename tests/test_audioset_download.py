"""Resumable downloads against a real HTTP server on 127.0.0.1 (http.server in a thread, with Range)."""

from __future__ import annotations

import base64
import hashlib
import http.server
import os
import re
import socket
import threading

import pytest

from audioset_fetch.download import DownloadError, RemoteFile, download, official_files
from homesound.cli import main

PAYLOAD = os.urandom(3 * 1024 * 1024 + 123)


class FileServer(http.server.ThreadingHTTPServer):
    """Serves `files` (path -> bytes); supports `Range: bytes=N-`; can misbehave on purpose."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), RangeHandler)
        self.files: dict[str, bytes] = {}
        self.drop_after: dict[str, int] = {}  # path -> bytes to send before hanging up (once)
        self.corrupt: set[str] = set()  # paths served with a flipped byte but the true MD5 header
        self.ignore_range = False
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class RangeHandler(http.server.BaseHTTPRequestHandler):
    server: FileServer

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        server = self.server
        server.requests.append((self.path, self.headers.get("Range")))
        if self.path not in server.files:
            self.send_error(404, "Not Found")
            return
        data = server.files[self.path]
        md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
        if self.path in server.corrupt:
            data = data[:1000] + bytes([data[1000] ^ 0xFF]) + data[1001:]
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and not server.ignore_range:
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", '"v1"')
        self.send_header("x-goog-hash", f"crc32c=AAAAAA==, md5={md5}")
        self.end_headers()
        limit = server.drop_after.pop(self.path, None)
        if limit is not None:
            self.wfile.write(body[:limit])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    instance = FileServer()
    thread = threading.Thread(target=instance.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield instance
    instance.shutdown()
    instance.server_close()


def test_a_plain_download_lands_atomically(server, tmp_path):
    server.files["/f/features.tar.gz"] = PAYLOAD
    path = download(RemoteFile("features.tar.gz", server.url + "/f/features.tar.gz"), tmp_path, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["features.tar.gz"]


def test_an_interrupted_transfer_is_resumed_with_a_range_request(server, tmp_path):
    server.files["/f/features.tar.gz"] = PAYLOAD
    server.drop_after["/f/features.tar.gz"] = 1_000_000
    remote = RemoteFile("features.tar.gz", server.url + "/f/features.tar.gz")
    with pytest.raises(DownloadError, match="run the same command again to resume") as failure:
        download(remote, tmp_path, progress=False)
    assert remote.url in str(failure.value)
    part = tmp_path / "features.tar.gz.part"
    assert not (tmp_path / "features.tar.gz").exists()
    kept = part.stat().st_size
    assert 0 < kept <= 1_000_000 and part.read_bytes() == PAYLOAD[:kept]

    path = download(remote, tmp_path, progress=False)
    assert path.read_bytes() == PAYLOAD and not part.exists()
    assert server.requests[-1] == ("/f/features.tar.gz", f"bytes={kept}-")


def test_a_server_that_ignores_range_restarts_cleanly(server, tmp_path):
    server.files["/x.csv"] = PAYLOAD
    (tmp_path / "x.csv.part").write_bytes(b"stale bytes from an earlier try")
    server.ignore_range = True
    path = download(RemoteFile("x.csv", server.url + "/x.csv"), tmp_path, progress=False)
    assert path.read_bytes() == PAYLOAD


def test_a_complete_part_file_is_finished_without_refetching(server, tmp_path):
    server.files["/x.csv"] = PAYLOAD
    (tmp_path / "x.csv.part").write_bytes(PAYLOAD)
    path = download(RemoteFile("x.csv", server.url + "/x.csv"), tmp_path, progress=False)
    assert path.read_bytes() == PAYLOAD


def test_a_corrupted_download_is_detected_by_the_servers_md5(server, tmp_path):
    server.files["/f/features.tar.gz"] = PAYLOAD
    server.corrupt.add("/f/features.tar.gz")
    with pytest.raises(DownloadError, match="corrupt.*md5"):
        download(RemoteFile("features.tar.gz", server.url + "/f/features.tar.gz"), tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []  # no final file, and no bad bytes left to resume from


def test_a_wrong_sha256_is_detected(server, tmp_path):
    server.files["/x.csv"] = PAYLOAD
    remote = RemoteFile("x.csv", server.url + "/x.csv", sha256="0" * 64)
    with pytest.raises(DownloadError, match="sha256"):
        download(remote, tmp_path, progress=False)
    good = RemoteFile("x.csv", server.url + "/x.csv", sha256=hashlib.sha256(PAYLOAD).hexdigest())
    assert download(good, tmp_path, progress=False).read_bytes() == PAYLOAD


def test_a_missing_file_is_reported_clearly(server, tmp_path):
    url = server.url + "/csv/nope.csv"
    with pytest.raises(DownloadError, match=re.escape(url) + r": not found \(HTTP 404\)"):
        download(RemoteFile("nope.csv", url), tmp_path, progress=False)
    assert not (tmp_path / "nope.csv").exists()


def test_no_server_is_reported_clearly_and_the_part_file_is_kept(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "x.csv.part").write_bytes(b"half")
    url = f"http://127.0.0.1:{port}/x.csv"
    with pytest.raises(DownloadError, match=re.escape(url) + ".*cannot connect.*kept"):
        download(RemoteFile("x.csv", url), tmp_path, progress=False)
    assert (tmp_path / "x.csv.part").read_bytes() == b"half"


def test_official_locations_by_default_and_overridable(monkeypatch):
    monkeypatch.delenv("HOMESOUND_AUDIOSET_BASE_URL", raising=False)
    files = {f.name: f.url for f in official_files(("csv", "ontology", "features"))}
    assert files["eval_segments.csv"] == "https://storage.googleapis.com/us_audioset/youtube_corpus/v1/csv/eval_segments.csv"
    assert files["features.tar.gz"].endswith("/youtube_corpus/v1/features/features.tar.gz")
    assert files["ontology.json"].startswith("https://raw.githubusercontent.com/audioset/ontology/")
    monkeypatch.setenv("HOMESOUND_AUDIOSET_BASE_URL", "http://mirror.example/as/")
    assert official_files(("features",))[0].url == "http://mirror.example/as/features/features.tar.gz"


def test_download_command_fetches_what_it_can_and_names_what_failed(server, tmp_path, capsys):
    for name in ("class_labels_indices.csv", "balanced_train_segments.csv", "eval_segments.csv"):
        server.files[f"/v1/csv/{name}"] = name.encode() * 1000
    server.files["/onto/ontology.json"] = b"[]"
    dest = tmp_path / "audioset"
    code = main(["audioset", "download", "--what", "csv,ontology", "--dest", str(dest),
                 "--base-url", server.url + "/v1", "--ontology-url", server.url + "/onto/ontology.json",
                 "--sha256", "ontology.json=" + hashlib.sha256(b"[]").hexdigest()])
    captured = capsys.readouterr()
    assert code == 2
    assert "unbalanced_train_segments.csv: not found (HTTP 404)" in captured.err
    assert "1 of 5 downloads failed" in captured.err
    assert sorted(p.name for p in dest.iterdir()) == [
        "balanced_train_segments.csv", "class_labels_indices.csv", "eval_segments.csv", "ontology.json"]
    assert (dest / "eval_segments.csv").read_bytes() == b"eval_segments.csv" * 1000
