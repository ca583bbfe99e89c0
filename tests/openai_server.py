"""A small OpenAI-compatible embeddings server on 127.0.0.1, for testing the real ``openai`` client.

``POST /v1/embeddings`` answers like the OpenAI API: deterministic vectors (derived from a hash of
each input), ``encoding_format`` ``float`` or ``base64``, ``dimensions``. Failures are scripted per
request number (``fail``: {n: (status, headers)}), per input text (``reject``: inputs containing a
marker get HTTP 400), or delayed (``delay``: {n: seconds}); ``hold_from`` blocks every request from
that number on until ``release`` is set. Every request is recorded.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Optional

import numpy as np


def vector_for(text: str, dim: int) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    return np.random.default_rng(seed).standard_normal(dim).astype(np.float32)


class FakeOpenAI:
    def __init__(self, dim: int = 16):
        self.dim = dim
        self.requests: List[Dict] = []
        self.fail: Dict[int, tuple] = {}
        self.delay: Dict[int, float] = {}
        self.reject: Optional[str] = None
        self.hold_from: Optional[int] = None
        self.release = threading.Event()
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status, body, headers=None):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                payload = json.loads(self.rfile.read(length))
                with server.lock:
                    n = len(server.requests) + 1
                    server.requests.append({"n": n, "payload": payload,
                                            "auth": self.headers.get("Authorization")})
                if self.path.rstrip("/") != "/v1/embeddings":
                    return self._send(404, {"error": {"message": "not found"}})
                if server.hold_from is not None and n >= server.hold_from:
                    server.release.wait(60)
                if n in server.delay:
                    time.sleep(server.delay[n])
                if n in server.fail:
                    status, headers = server.fail[n]
                    return self._send(status, {"error": {"message": f"scripted {status}",
                                                         "type": "server_error"}}, headers)
                inputs = payload["input"]
                inputs = [inputs] if isinstance(inputs, str) else inputs
                if server.reject and any(server.reject in t for t in inputs):
                    return self._send(400, {"error": {"message": "invalid input",
                                                      "type": "invalid_request_error"}})
                dim = payload.get("dimensions") or server.dim
                data = []
                for i, text in enumerate(inputs):
                    vec = vector_for(text, dim)
                    if payload.get("encoding_format") == "base64":
                        emb = base64.b64encode(vec.tobytes()).decode()
                    else:
                        emb = vec.tolist()
                    data.append({"object": "embedding", "index": i, "embedding": emb})
                data.reverse()  # the API does not promise order; the client must sort by index
                self._send(200, {"object": "list", "data": data, "model": payload["model"],
                                 "usage": {"prompt_tokens": 1, "total_tokens": 1}})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def inputs(self) -> List[str]:
        out = []
        for r in self.requests:
            inp = r["payload"]["input"]
            out.extend([inp] if isinstance(inp, str) else inp)
        return out

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
