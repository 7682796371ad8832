"""A real HTTP server on 127.0.0.1 speaking the OpenAI chat-completions protocol, for judge tests.

``POST /v1/chat/completions`` returns the real JSON shape (id, object, created, model, choices with
message/finish_reason, usage). The fake judge reads the two outputs from the rendered prompt
(``## Output (a)`` / ``## Output (b)`` sections) and prefers the one with more ``good`` than ``bad``
words; on a tie it answers ``(a)`` (a mild position bias). ``position_bias=True`` makes it always
answer ``(a)``. A text containing ``[[confuse]]`` gets an unparseable answer.

Faults are consumed one per request from ``faults`` (a list of names, ``None`` = serve normally):
``429`` (with ``Retry-After``), ``500``, ``503``, ``timeout`` (sleeps ``timeout_sleep`` before
answering), ``malformed`` (truncated JSON), ``html`` (a text/html page), ``empty`` (no choices),
``drop`` (closes the connection without an answer), ``400`` (not retryable).

Runs in a thread (:class:`FakeOpenAIServer`) or, for kill tests, as a subprocess::

    python tests/fake_openai_server.py --port 0 --api-key KEY [--die-after N] [--latency S]

which prints ``PORT <n>`` when ready; ``--die-after N`` makes the process exit abruptly when request
N + 1 arrives (dropping every request in flight). ``GET /_stats`` returns the counters as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_SECTION = re.compile(r"## Output \(a\)\s*\n(.*?)\n\s*## Output \(b\)\s*\n(.*?)(?:\n\s*## |\Z)", re.S)


def score(text: str) -> int:
    """The fake judge's quality score of a response."""
    low = text.lower()
    return len(re.findall(r"\bgood\b", low)) - len(re.findall(r"\bbad\b", low))


class State:
    """Counters, fault plan and behaviour of one fake server (shared by its handler threads)."""

    def __init__(self, *, api_key: str | None = None, fmt: str = "output_ab", position_bias: bool = False,
                 latency: float = 0.0, retry_after: str = "0.2", timeout_sleep: float = 1.0,
                 die_after: int | None = None):
        self.lock = threading.Lock()
        self.api_key = api_key
        self.fmt = fmt
        self.position_bias = position_bias
        self.latency = latency
        self.retry_after = retry_after
        self.timeout_sleep = timeout_sleep
        self.die_after = die_after
        self.faults: list[str | None] = []
        self.requests = 0          # POSTs to /v1/chat/completions
        self.served = 0            # successful completions
        self.unauthorized = 0      # requests refused with 401 (not counted in ``requests``)
        self.in_flight = 0
        self.max_in_flight = 0
        self.times: list[tuple[float, str]] = []  # (arrival time, fault or "ok")
        self.bodies: list[dict] = []

    def stats(self) -> dict:
        with self.lock:
            return {"requests": self.requests, "served": self.served, "max_in_flight": self.max_in_flight}


def answer(state: State, messages: list[dict]) -> str:
    """The fake judge's text for a request's messages."""
    user = "\n".join(m.get("content", "") for m in messages if m.get("role") == "user")
    m = _SECTION.search(user)
    if not m:
        return "I need two outputs to compare."
    a, b = m.group(1), m.group(2)
    if "[[confuse]]" in a or "[[confuse]]" in b:
        return "Both outputs have merits; I cannot decide."
    if state.position_bias:
        pick = "a"
    else:
        sa, sb = score(a), score(b)
        pick = "b" if sb > sa else "a"
    if state.fmt == "json":
        return json.dumps({"winner": pick, "reason": "fake"})
    if state.fmt == "token":
        return "1" if pick == "a" else "2"
    return f"Output ({pick})"


def make_handler(state: State):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # keep test output clean
            pass

        def _send(self, status: int, body: bytes, content_type: str = "application/json",
                  headers: dict | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: int, message: str, code: str, headers: dict | None = None) -> None:
            body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}
            self._send(status, json.dumps(body).encode(), headers=headers)

        def do_GET(self):
            if self.path == "/_stats":
                self._send(200, json.dumps(state.stats()).encode())
            else:
                self._error(404, "not found", "not_found")

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._error(404, f"Unknown path {self.path}", "not_found")
                return
            auth = self.headers.get("Authorization", "")
            if state.api_key is not None and auth != f"Bearer {state.api_key}":
                given = auth.removeprefix("Bearer ")
                with state.lock:
                    state.unauthorized += 1
                self._error(401, f"Incorrect API key provided: {given}. You can find your API key at "
                                 "https://platform.openai.com/account/api-keys.", "invalid_api_key")
                return
            with state.lock:
                state.requests += 1
                n = state.requests
                fault = state.faults.pop(0) if state.faults else None
                state.times.append((time.monotonic(), fault or "ok"))
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
            try:
                if state.die_after is not None and n > state.die_after:
                    os._exit(0)  # a crash: every connection in flight is dropped
                body = json.loads(raw)
                with state.lock:
                    state.bodies.append(body)
                self._serve(body, fault)
            finally:
                with state.lock:
                    state.in_flight -= 1

        def _serve(self, body: dict, fault: str | None) -> None:
            if fault == "429":
                self._error(429, "Rate limit reached for requests", "rate_limit_exceeded",
                            headers={"Retry-After": state.retry_after})
                return
            if fault in ("500", "503"):
                self._error(int(fault), "The server had an error while processing your request.", "server_error")
                return
            if fault == "400":
                self._error(400, "This model's maximum context length is 8 tokens.", "context_length_exceeded")
                return
            if fault == "drop":
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            if fault == "timeout":
                time.sleep(state.timeout_sleep)
            if fault == "malformed":
                self._send(200, b'{"id": "chatcmpl-broken", "object": "chat.completion", "choices": [{"ind')
                return
            if fault == "html":
                self._send(200, b"<html><body>502 Bad Gateway</body></html>", content_type="text/html")
                return
            if fault == "empty":
                self._send(200, json.dumps({"id": "chatcmpl-empty", "object": "chat.completion",
                                            "created": int(time.time()), "model": body.get("model"),
                                            "choices": []}).encode())
                return
            if state.latency:
                time.sleep(state.latency)
            content = answer(state, body.get("messages", []))
            prompt_tokens = sum(len(m.get("content", "")) for m in body.get("messages", [])) // 4
            response = {
                "id": f"chatcmpl-{state.requests}", "object": "chat.completion", "created": int(time.time()),
                "model": body.get("model"), "system_fingerprint": "fp_fake",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": None},
                             "logprobs": None, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 3,
                          "total_tokens": prompt_tokens + 3},
            }
            with state.lock:
                state.served += 1
            try:
                self._send(200, json.dumps(response).encode())
            except OSError:  # the client gave up (timeout) and closed the connection
                self.close_connection = True

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):  # dropped connections are part of the tests
        pass


class FakeOpenAIServer:
    """The fake server in a background thread; ``base_url`` ends in ``/v1``."""

    def __init__(self, port: int = 0, **state_kwargs):
        self.state = State(**state_kwargs)
        self._port = port
        self.httpd: _Server | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> "FakeOpenAIServer":
        self.httpd = _Server(("127.0.0.1", self._port), make_handler(self.state))
        self._port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}/v1"

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None


def main(argv: list[str] | None = None) -> None:
    """Run the fake server in this process (subprocess mode); prints ``PORT <n>`` when ready."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--api-key", default=None)
    ap.add_argument("--die-after", type=int, default=None)
    ap.add_argument("--latency", type=float, default=0.0)
    args = ap.parse_args(argv)
    state = State(api_key=args.api_key, die_after=args.die_after, latency=args.latency)
    httpd = _Server(("127.0.0.1", args.port), make_handler(state))
    print(f"PORT {httpd.server_address[1]}", flush=True)
    httpd.serve_forever(poll_interval=0.05)


if __name__ == "__main__":
    main(sys.argv[1:])
