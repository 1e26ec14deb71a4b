"""A local stand-in for a model server, speaking the OpenAI chat-completions streaming wire
format (server-sent events: `data: {chunk}` lines, then `data: [DONE]`). The model name picks
the behaviour: `steady` streams a reply; `broken` stops midway without [DONE]; `down` answers
500; `flaky` answers 503 once, then streams. Hostile ones: `verbose` streams 100,000 characters;
`endless-line` sends a line of 4 MiB with no line feed; `numbers` sends a delta that is a number;
`separators` streams text holding U+2028 and U+0085 unescaped, as JSON allows."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REPLY = ["The ", "launch ", "is ", "on ", "Friday."]
SEPARATED = ["one\u2028line ", "and\x85another"]


class ModelServer:
    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self._flaky_failed = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                server.requests.append(body)
                server.headers.append(dict(self.headers))
                model = body["model"]
                if model == "down" or (model == "flaky" and not server._flaky_failed):
                    server._flaky_failed = True
                    status = 500 if model == "down" else 503
                    payload = json.dumps({"error": {"message": "overloaded", "type": "server_error"}}).encode()
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("connection", "close")
                self.end_headers()
                try:
                    self._stream(model)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up on a hostile stream
                    self.close_connection = True

            def _stream(self, model: str) -> None:
                if model == "endless-line":
                    self.wfile.write(b"data: ")
                    for _ in range(64):
                        self.wfile.write(b"A" * 65536)
                    self.close_connection = True
                    return
                pieces: list = {"broken": REPLY[:2], "verbose": ["x" * 1000] * 100, "numbers": [5], "separators": SEPARATED}.get(
                    model, REPLY
                )
                for piece in pieces:
                    chunk = {
                        "id": "c1",
                        "object": "chat.completion.chunk",
                        "model": model,
                        "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
                    }
                    self.wfile.write(f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode())
                    self.wfile.flush()
                if model == "broken":
                    self.close_connection = True
                    return
                usage = {
                    "id": "c1",
                    "object": "chat.completion.chunk",
                    "model": model,
                    "choices": [],
                    "usage": {"prompt_tokens": 42, "completion_tokens": len(REPLY), "total_tokens": 42 + len(REPLY)},
                }
                self.wfile.write(f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())
                self.wfile.flush()
                self.close_connection = True

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> ModelServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
