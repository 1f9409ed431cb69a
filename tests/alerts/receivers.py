"""Real local receivers for the alert channels, started by the tests: an SMTP server (aiosmtpd),
an HTTP webhook receiver and a stand-in for the Telegram Bot API (both ThreadingHTTPServer).
Each records what it received; nothing is mocked on the sending side."""

from __future__ import annotations

import json
import socket
import threading
from email import message_from_bytes
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SMTPReceiver:
    """aiosmtpd on 127.0.0.1:<free port>; ``messages`` holds the parsed e-mails."""

    def __init__(self):
        self.messages = []
        receiver = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
                msg = message_from_bytes(envelope.content, policy=default_policy)
                receiver.messages.append({"to": list(envelope.rcpt_tos), "subject": str(msg["subject"]),
                                          "body": msg.get_content()})
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def close(self):
        self.controller.stop()


class HTTPReceiver:
    """Records every POST (path, headers, raw body). ``answer`` decides the reply: (status, dict)."""

    def __init__(self, answer=None):
        self.requests = []
        self.answer = answer or (lambda path, body: (200, {"ok": True}))
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                status, payload = receiver.answer(self.path, body)
                raw = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def json_bodies(self):
        return [json.loads(r["body"]) for r in self.requests]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class TelegramStandIn(HTTPReceiver):
    """The Bot API's sendMessage: ``/bot<token>/sendMessage`` answers {"ok": true, "result": …} for
    the known token and {"ok": false, "error_code": 401, "description": "Unauthorized"} otherwise,
    as the real API does."""

    def __init__(self, token: str):
        def answer(path, body):
            if path != f"/bot{token}/sendMessage":
                return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
            msg = json.loads(body)
            return 200, {"ok": True, "result": {"message_id": len(self.requests), "chat": {"id": msg["chat_id"]},
                                                "text": msg["text"]}}

        super().__init__(answer)

    def texts(self):
        return [json.loads(r["body"])["text"] for r in self.requests if r["path"].endswith("/sendMessage")]
