"""Contract fakes of where `agentfire watch` pages: a PagerDuty Events API v2 endpoint, a Slack
incoming webhook, and a plain JSON receiver (the generic webhook; Alertmanager's webhook
receiver in the real-Alertmanager test). Threaded http.servers on 127.0.0.1, free ports.

- PagerDuty (developer.pagerduty.com, Events API v2 "Send an alert event"): POST /v2/enqueue,
  body routing_key (the integration's key), event_action trigger|acknowledge|resolve, dedup_key
  (<= 255 characters; required to acknowledge/resolve), and for trigger a payload with summary
  (<= 1024), source, severity critical|error|warning|info, optional timestamp (ISO 8601),
  component, group, class, custom_details (object); links [{href, text}], images [{src}];
  at most 512 KB. 202 {"status": "success", "message": "Event processed", "dedup_key"}; 400
  {"status": "invalid event", "message": "Event object is invalid", "errors": [...]}.
- Slack incoming webhook (api.slack.com/messaging/webhooks): POST JSON {text, blocks}; 200 "ok";
  400 "invalid_payload" / "invalid_blocks" / "no_text"; each block parsed and validated by
  slack_sdk's Block Kit models (their length limits: header 150, section text 3000, 10 fields
  of 2000), at most 50 blocks.
- Faults: `rate_limit(times, retry_after)` answers 429 with Retry-After that many times first.
Every request is recorded with its arrival time (monotonic), status and body.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PD_SEVERITIES = ("critical", "error", "warning", "info")
PD_ACTIONS = ("trigger", "acknowledge", "resolve")
PD_MAX_BYTES = 512 * 1024


@dataclass
class Received:
    at: float
    path: str
    status: int
    body: Any
    headers: dict[str, str]


class _Server:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.errors: list[str] = []
        self._limit = 0
        self._retry_after = "1"
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    def rate_limit(self, times: int, retry_after: str = "1") -> None:
        self._limit, self._retry_after = times, retry_after

    @property
    def url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def bodies(self, status: int | None = None) -> list[Any]:
        return [r.body for r in self.received if status is None or r.status == status]

    def answer(self, path: str, raw: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        raise NotImplementedError

    def start(self) -> "_Server":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_a: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with fake._lock:
                    if fake._limit > 0:
                        fake._limit -= 1
                        status, headers, body = 429, {"Retry-After": fake._retry_after}, b"rate_limited"
                    else:
                        status, headers, body = fake.answer(self.path, raw, dict(self.headers))
                    try:
                        parsed = json.loads(raw)
                    except ValueError:
                        parsed = raw.decode("utf-8", "replace")
                    fake.received.append(Received(time.monotonic(), self.path, status, parsed, dict(self.headers)))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class Receiver(_Server):
    """Takes any JSON POST (200)."""

    def answer(self, path: str, raw: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        try:
            json.loads(raw)
        except ValueError:
            return 400, {}, b"not JSON"
        return 200, {}, b"{}"


def pagerduty_problems(doc: Any, routing_key: str) -> list[str]:
    """What the Events API v2 would refuse in `doc` (empty: a valid event)."""
    errs: list[str] = []
    if not isinstance(doc, dict):
        return ["the event must be a JSON object"]
    if doc.get("routing_key") != routing_key:
        errs.append("routing_key is missing or not this integration's key")
    action = doc.get("event_action")
    if action not in PD_ACTIONS:
        errs.append(f"event_action must be one of {PD_ACTIONS}")
    dedup = doc.get("dedup_key")
    if dedup is not None and (not isinstance(dedup, str) or len(dedup) > 255):
        errs.append("dedup_key must be a string of at most 255 characters")
    if action in ("acknowledge", "resolve") and not dedup:
        errs.append(f"dedup_key is required to {action}")
    if action == "trigger":
        p = doc.get("payload")
        if not isinstance(p, dict):
            errs.append("payload is required for trigger")
        else:
            s = p.get("summary")
            if not isinstance(s, str) or not s or len(s) > 1024:
                errs.append("payload.summary must be 1..1024 characters")
            if not isinstance(p.get("source"), str) or not p["source"]:
                errs.append("payload.source is required")
            if p.get("severity") not in PD_SEVERITIES:
                errs.append(f"payload.severity must be one of {PD_SEVERITIES}")
            if p.get("timestamp") is not None:
                try:
                    datetime.fromisoformat(str(p["timestamp"]).replace("Z", "+00:00"))
                except ValueError:
                    errs.append("payload.timestamp must be ISO 8601")
            for k in ("component", "group", "class"):
                if p.get(k) is not None and not isinstance(p[k], str):
                    errs.append(f"payload.{k} must be a string")
            if p.get("custom_details") is not None and not isinstance(p["custom_details"], dict):
                errs.append("payload.custom_details must be an object")
            unknown = set(p) - {"summary", "source", "severity", "timestamp", "component", "group", "class",
                                "custom_details"}
            if unknown:
                errs.append(f"payload has unknown fields {sorted(unknown)}")
        for link in doc.get("links") or []:
            if not isinstance(link, dict) or not isinstance(link.get("href"), str):
                errs.append("each link needs an href")
        unknown = set(doc) - {"routing_key", "event_action", "dedup_key", "payload", "links", "images", "client",
                              "client_url"}
        if unknown:
            errs.append(f"unknown top-level fields {sorted(unknown)}")
    return errs


class FakePagerDuty(_Server):
    def __init__(self, routing_key: str = "R0UT1NGKEY0000000000000000000000") -> None:
        super().__init__()
        self.routing_key = routing_key

    def answer(self, path: str, raw: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        if path != "/v2/enqueue":
            return 404, {}, b'{"status":"not found"}'
        if len(raw) > PD_MAX_BYTES:
            return 400, {}, b'{"status":"invalid event","message":"Event object is too large"}'
        try:
            doc = json.loads(raw)
        except ValueError:
            return 400, {}, b'{"status":"invalid event","message":"Event object is invalid","errors":["not JSON"]}'
        errs = pagerduty_problems(doc, self.routing_key)
        if errs:
            self.errors.extend(errs)
            return 400, {"Content-Type": "application/json"}, json.dumps(
                {"status": "invalid event", "message": "Event object is invalid", "errors": errs}).encode()
        body = {"status": "success", "message": "Event processed", "dedup_key": doc.get("dedup_key") or "generated"}
        return 202, {"Content-Type": "application/json"}, json.dumps(body).encode()


def slack_problems(doc: Any) -> list[str]:
    """What a Slack incoming webhook would refuse (empty: valid), with slack_sdk's models."""
    from slack_sdk.errors import SlackObjectFormationError
    from slack_sdk.models.blocks import Block

    if not isinstance(doc, dict):
        return ["invalid_payload"]
    blocks = doc.get("blocks")
    if not doc.get("text") and not blocks:
        return ["no_text"]
    errs = []
    if blocks is not None:
        if not isinstance(blocks, list) or len(blocks) > 50:
            return ["invalid_blocks: at most 50 blocks"]
        for b in blocks:
            parsed = Block.parse(b) if isinstance(b, dict) else None
            if parsed is None or type(parsed).__name__ == "Block":
                errs.append(f"invalid_blocks: unknown block {b!r:.80}")
                continue
            try:
                parsed.validate_json()
            except SlackObjectFormationError as exc:
                errs.append(f"invalid_blocks: {exc}")
            if parsed.to_dict() != b:
                errs.append(f"invalid_blocks: fields Slack does not know in {b!r:.120}")
    return errs


class FakeSlack(_Server):
    PATH = "/services/T000/B000/XXXXSECRETXXXX"

    def answer(self, path: str, raw: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        if path != self.PATH:
            return 404, {}, b"no_service"
        try:
            doc = json.loads(raw)
        except ValueError:
            return 400, {}, b"invalid_payload"
        errs = slack_problems(doc)
        if errs:
            self.errors.extend(errs)
            return 400, {}, errs[0].split(":")[0].encode()
        return 200, {"Content-Type": "text/plain"}, b"ok"

    @property
    def webhook(self) -> str:
        return self.url + self.PATH
