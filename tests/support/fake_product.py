"""A product's receiver of outbound case events, on 127.0.0.1 in a background thread: it
verifies each delivery's signature as a real receiver would (`verify_signature`), keeps the
events it accepted in order, and can be told to fail its next deliveries."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from activities.outbound import EVENT_ID_HEADER, SignatureError, verify_signature
from tests.support.fake_http import LocalServer

SECRET = "product-webhook-secret-0123456789"


class FakeProduct(LocalServer):
    """Accepts correctly signed events with 200 (after `fail_next` answers of 503); a bad
    signature gets 400 and is kept in `refused`."""

    def __init__(self, secret: str = SECRET, port: int = 0) -> None:
        self.secret = secret
        self.events: list[dict] = []
        self.refused: list[str] = []
        self.requests = 0
        self.fail_next = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def ids(self) -> list[str]:
        """The ids of the events accepted, in the order they arrived."""
        return [event["id"] for event in self.events]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        product = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with product._lock:
                    product.requests += 1
                    if product.fail_next > 0:
                        product.fail_next -= 1
                        return self._answer(503)
                    try:
                        verify_signature(
                            body, self.headers.get("Dunning-Signature"), product.secret, time.time()
                        )
                    except SignatureError as err:
                        product.refused.append(str(err))
                        return self._answer(400)
                    event = json.loads(body)
                    assert self.headers.get(EVENT_ID_HEADER) == event["id"]
                    product.events.append(event)
                self._answer(200)

            def _answer(self, status: int) -> None:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        return Handler
