"""A web app's own origin for browser tests: a blank page served on a free local port, a
bucket whose CORS rule allows it, and the error code of an S3 XML answer."""

from __future__ import annotations

import contextlib
import http.server
import re
import threading
from collections.abc import Iterator
from typing import Any

from botocore.client import BaseClient

from .backends import Store, new_bucket
from .helpers import free_port

PAGE = b"<!doctype html><html><head><meta charset=utf-8><title>app</title></head><body></body>"
DONE = b"<!doctype html><html><head><meta charset=utf-8><title>done</title></head><body>ok</body>"


class _Page(http.server.BaseHTTPRequestHandler):
    """The web app's own origin: a blank page, and /done for form redirects to land on."""

    def do_GET(self) -> None:
        body = DONE if self.path.startswith("/done") else PAGE
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: pytest shows failures
        pass


@contextlib.contextmanager
def serve_origin() -> Iterator[str]:
    """The page's origin (``http://127.0.0.1:PORT``) while the block runs."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def cors_bucket(rgw_store: Store, store: BaseClient, origin: str) -> str:
    bucket = new_bucket(rgw_store, "browser")
    store.put_bucket_cors(  # set directly on RGW: s3shim has no CORS rules of its own
        Bucket=bucket,
        CORSConfiguration={
            "CORSRules": [
                {
                    "AllowedOrigins": [origin],
                    "AllowedMethods": ["GET", "PUT", "POST", "HEAD"],
                    "AllowedHeaders": ["*"],
                    "ExposeHeaders": ["ETag"],
                    "MaxAgeSeconds": 60,
                }
            ]
        },
    )
    return bucket


def code_of(text: str | None) -> str | None:
    found = re.search(r"<Code>([^<]*)</Code>", text or "")
    return found.group(1) if found else None
