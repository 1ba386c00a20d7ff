"""A stand-in for tfhub.dev on 127.0.0.1, for tests: serves one SavedModel the way Hub serves a handle."""

from __future__ import annotations

import http.server
import io
import tarfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

class _HubHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        self.server.requests.append(self.path)
        if not self.path.startswith(f"{self.server.handle_path}?tf-hub-format=compressed"):
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/x-tar")
        self.send_header("Content-Length", str(len(self.server.archive)))
        self.end_headers()
        self.wfile.write(self.server.archive)

    def log_message(self, *args):
        pass


@contextmanager
def serve_savedmodel(savedmodel: Path, handle_path: str = "/google/vggish/1"
                     ) -> Iterator[http.server.ThreadingHTTPServer]:
    """A server whose `requests` lists what was asked; the handle is http://127.0.0.1:PORT<handle_path>."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:  # Hub serves tar.gz; plain tar is quicker here
        for item in sorted(Path(savedmodel).rglob("*")):
            archive.add(item, arcname=str(item.relative_to(savedmodel)), recursive=False)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HubHandler)
    server.archive, server.requests, server.handle_path = buffer.getvalue(), [], handle_path
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
