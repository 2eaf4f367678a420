"""A LaunchDarkly contract fake: the few REST endpoints agentfire uses, answering like the real API.

No LaunchDarkly server can run here, so this fake stands in for it in tests. It cannot drift from
the real API unnoticed: every JSON body it sends is validated, inside the fake, with the models of
the `launchdarkly-api` package (generated from LaunchDarkly's OpenAPI spec), and any key those
models do not know is an error too. A failed validation answers 500 and is kept in `.errors`;
the `launchdarkly_fake` fixture fails the test on any.

Endpoints (one project, several environments, several flags):
  GET   /api/v2/flags/{p}/{f}?env=E[&env=..]            FeatureFlag, environments filtered by env
  PATCH /api/v2/flags/{p}/{f}[?dryRun=true]              semantic patch only (400 without the
                                                         domain-model content type); 405 when the
                                                         environment requires approval
  POST  /api/v2/projects/{p}/flags/{f}/environments/{e}/approval-requests   201 approval request
  GET   /api/v2/projects/{p}/flags/{f}/environments/{e}/approval-requests   the flag's approval
                                                         requests in that environment (no filter or
                                                         paging, like getApprovalsForFlag)
  GET   /api/v2/projects/{p}/environments?limit&offset   Environments (approvalSettings.required)

And the server-side SDK's own endpoints (what agents read, with an environment's SDK key), in
LaunchDarkly's flag-data format, parsed by the real `launchdarkly-server-sdk` in the tests:
  GET   /all                 (stream) SSE: `put` {"path":"/","data":{"flags":..,"segments":{}}},
                             then a `patch` {"path":"/flags/<key>","data":<flag>} per change
  GET   /sdk/latest-all      (polling) {"flags": {...}, "segments": {}}
`fake.sdk_mode(env, "down" | "hang" | "ok")` makes the SDK endpoints of one environment answer
503 (and drop open streams), or hold every request without a byte.

Faults are injected per environment (`fake.inject(env, ...)`), and every request is recorded
(method, path, query, headers with the token value replaced, JSON body, monotonic time).
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

SEMANTIC_PATCH_MARKER = "domain-model=launchdarkly.semanticpatch"
API_VERSION = "20240415"

# Error bodies carry an `id` (documented in the API overview, "Errors") that the generated error
# models do not declare; it is the one key allowed beyond the models.
ERROR_EXTRA_KEYS = frozenset({"id"})


def _models() -> dict[str, Any]:
    # launchdarkly_api's package import takes seconds: load it when the first fake starts
    from launchdarkly_api.models.environments import Environments
    from launchdarkly_api.models.feature_flag import FeatureFlag
    from launchdarkly_api.models.flag_config_approval_request_response import (
        FlagConfigApprovalRequestResponse,
    )
    from launchdarkly_api.models.flag_config_approval_requests_response import (
        FlagConfigApprovalRequestsResponse,
    )
    from launchdarkly_api.models.forbidden_error_rep import ForbiddenErrorRep
    from launchdarkly_api.models.invalid_request_error_rep import InvalidRequestErrorRep
    from launchdarkly_api.models.method_not_allowed_error_rep import MethodNotAllowedErrorRep
    from launchdarkly_api.models.not_found_error_rep import NotFoundErrorRep
    from launchdarkly_api.models.rate_limited_error_rep import RateLimitedErrorRep
    from launchdarkly_api.models.status_conflict_error_rep import StatusConflictErrorRep
    from launchdarkly_api.models.unauthorized_error_rep import UnauthorizedErrorRep

    return {
        "flag": FeatureFlag, "approval": FlagConfigApprovalRequestResponse,
        "approvals": FlagConfigApprovalRequestsResponse, "environments": Environments,
        400: InvalidRequestErrorRep, 401: UnauthorizedErrorRep, 403: ForbiddenErrorRep,
        404: NotFoundErrorRep, 405: MethodNotAllowedErrorRep, 409: StatusConflictErrorRep,
        429: RateLimitedErrorRep,
    }


def unknown_keys(sent: Any, known: Any, at: str = "$") -> list[str]:
    """Keys in `sent` that the model's own dump (`known`) does not have: fields the fake invented."""
    out: list[str] = []
    if isinstance(sent, dict) and isinstance(known, dict):
        for k, v in sent.items():
            if k not in known:
                out.append(f"{at}.{k}")
            else:
                out += unknown_keys(v, known[k], f"{at}.{k}")
    elif isinstance(sent, list) and isinstance(known, list):
        for i, (a, b) in enumerate(zip(sent, known)):
            out += unknown_keys(a, b, f"{at}[{i}]")
    return out


def conform(model: Any, body: dict[str, Any], extra: frozenset[str] = frozenset()) -> None:
    """Raise ValueError unless `body` parses with the vendor model and has no unknown keys."""
    parsed = model.from_dict(body)  # pydantic ValidationError on a wrong type or missing field
    stray = [k for k in unknown_keys(body, parsed.to_dict()) if k.removeprefix("$.") not in extra]
    if stray:
        raise ValueError(f"{model.__name__}: keys the API does not define: {', '.join(stray)}")


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class EnvState:
    key: str
    name: str
    approval_required: bool = False


@dataclass
class FlagEnv:
    on: bool = True
    version: int = 1
    last_modified: int = field(default_factory=now_ms)
    off_variation: int = 1  # index into variations (0 = true, 1 = false)


@dataclass
class FlagState:
    key: str
    envs: dict[str, FlagEnv]
    version: int = 1
    created: int = field(default_factory=now_ms)


@dataclass
class Fault:
    """What to do instead of (or besides) the normal answer.

    kind: "status" (answer `status` with an error body and `headers`; for 429 `retry_after` sets
    Retry-After in seconds and `reset_in` sets X-Ratelimit-Reset to now + reset_in, epoch ms),
    "hang" (hold the request `seconds`, then close without answering), "cut" (close the socket
    without answering), "stuck_on" (a write answers 200 but changes nothing).
    on: "read", "write", "approval" (creating an approval request), "approval-list" (listing
    them) or "any".
    times: how many requests it hits (None: all).
    """

    kind: str
    on: str = "write"
    status: int = 0
    times: int | None = None
    retry_after: float | None = None
    reset_in: float | None = None
    seconds: float = 60.0
    message: str = ""


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    t: float  # time.monotonic() when the request arrived
    env: str | None
    answer: str = ""  # the status sent, or "cut" / "hang"


ERROR_CODES = {400: "invalid_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 409: "optimistic_locking_error", 429: "rate_limited",
               500: "internal_server_error", 502: "bad_gateway", 503: "service_unavailable"}


class LaunchDarklyFake:
    def __init__(self, project: str = "default", tokens: tuple[str, ...] = ("api-fake-token-0000",)):
        self.project = project
        self.tokens = set(tokens)
        self.envs: dict[str, EnvState] = {}
        self.flags: dict[str, FlagState] = {}
        self.faults: dict[str, list[Fault]] = {}
        self.requests: list[Recorded] = []
        self.approvals: list[dict[str, Any]] = []
        self.errors: list[str] = []  # validation failures: the fake drifted from the API
        self._lock = threading.RLock()
        self._release = threading.Event()
        self._models = _models()
        self.sdk_keys: dict[str, str] = {}
        self.sdk_modes: dict[str, str] = {}
        self._changed = threading.Condition(self._lock)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- set-up -------------------------------------------------------------------------------

    def add_env(self, key: str, *, approval_required: bool = False) -> None:
        with self._lock:
            self.envs[key] = EnvState(key, key.title(), approval_required)
            self.sdk_keys[key] = f"sdk-{key}-{uuid.uuid4().hex[:12]}"
            for f in self.flags.values():
                f.envs.setdefault(key, FlagEnv())

    def add_flag(self, key: str, *, on: bool | dict[str, bool] = True) -> None:
        with self._lock:
            state = on if isinstance(on, dict) else {e: on for e in self.envs}
            self.flags[key] = FlagState(key, {e: FlagEnv(on=state.get(e, True)) for e in self.envs})

    def inject(self, env: str, kind: str, **kw: Any) -> Fault:
        fault = Fault(kind=kind, **kw)
        with self._lock:
            self.faults.setdefault(env, []).append(fault)
        return fault

    def is_on(self, flag: str, env: str) -> bool:
        with self._lock:
            return self.flags[flag].envs[env].on

    def set_on(self, flag: str, env: str, on: bool) -> None:
        with self._lock:
            state = self.flags[flag].envs[env]
            state.on = on
            state.version += 1
            self._changed.notify_all()

    def set_off_variation(self, flag: str, env: str, index: int) -> None:
        """Which variation an off flag serves (0: true, 1: false), as set in LaunchDarkly's UI."""
        with self._lock:
            state = self.flags[flag].envs[env]
            state.off_variation = index
            state.version += 1
            self._changed.notify_all()

    def sdk_mode(self, env: str, mode: str) -> None:
        """"ok", "down" (503, open streams dropped) or "hang" (no byte, open streams go quiet)."""
        with self._lock:
            self.sdk_modes[env] = mode
            self._changed.notify_all()

    def sdk_flag(self, flag: FlagState, env: str) -> dict[str, Any]:
        """One flag in the server-side SDK's flag-data format."""
        st = flag.envs[env]
        return {"key": flag.key, "version": st.version, "on": st.on, "variations": [True, False],
                "offVariation": st.off_variation, "fallthrough": {"variation": 0},
                "targets": [], "contextTargets": [], "rules": [], "prerequisites": [],
                "salt": f"salt-{env}", "trackEvents": False, "trackEventsFallthrough": False,
                "clientSide": False, "deleted": False}

    def sdk_data(self, env: str) -> dict[str, Any]:
        return {"flags": {k: self.sdk_flag(f, env) for k, f in self.flags.items()}, "segments": {}}

    def add_approval(self, flag: str, env: str, kind: str, *, review: str = "pending",
                     applied: bool = False, requestor: str = "member-oncall",
                     created: int | None = None) -> dict[str, Any]:
        """An approval request filed earlier (by anyone): `review` pending, approved or declined;
        `applied` means approved and carried out (status completed)."""
        doc = self._approval_doc(flag, env, f"earlier request to {kind}", [{"kind": kind}],
                                 requestor=requestor, created=created)
        if review != "pending":
            doc["reviewStatus"] = review
            doc["allReviews"] = [{"_id": uuid.uuid4().hex[:24], "kind": "approve" if review == "approved" else "decline",
                                  "creationDate": now_ms(), "memberId": "member-approver"}]
        if applied:
            doc.update(status="completed", appliedDate=now_ms(), appliedByMemberId="member-approver")
        with self._lock:
            self.approvals.append({**doc, "flag": flag, "env": env})
        return doc

    def _approval_doc(self, flag: str, env: str, description: str, instructions: list[Any], *,
                      requestor: str = "member-agentfire", created: int | None = None) -> dict[str, Any]:
        rid = uuid.uuid4().hex[:24]
        return {
            "_id": rid, "_version": 1, "creationDate": now_ms() if created is None else created,
            "serviceKind": "launchdarkly", "requestorId": requestor,
            "description": description, "reviewStatus": "pending", "allReviews": [],
            "notifyMemberIds": [], "status": "pending", "instructions": instructions,
            "conflicts": [],
            "_links": {"self": {"href": f"/api/v2/projects/{self.project}/flags/{flag}/environments/{env}"
                                        f"/approval-requests/{rid}", "type": "application/json"}},
        }

    def approvals_json(self, flag: str, env: str) -> dict[str, Any]:
        items = [{k: v for k, v in a.items() if k not in ("flag", "env")}
                 for a in self.approvals if a["flag"] == flag and a["env"] == env]
        return {"items": items, "_links": {"self": {
            "href": f"/api/v2/projects/{self.project}/flags/{flag}/environments/{env}/approval-requests",
            "type": "application/json"}}}

    def requests_for(self, env: str, method: str | None = None) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.env == env and (method is None or r.method == method)]

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"{getattr(self, '_scheme', 'http')}://127.0.0.1:{self._server.server_address[1]}"

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self, tls: Any = None) -> "LaunchDarklyFake":
        """Serve; with `tls` (a server ssl.SSLContext) over HTTPS."""
        fake = self
        self._scheme = "https" if tls is not None else "http"

        class Handler(_Handler):
            pass

        Handler.fake = fake
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        kwargs={"poll_interval": 0.05})
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()  # free hung handlers
        with self._lock:
            self._changed.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # --- answering ----------------------------------------------------------------------------

    def _take_fault(self, env: str | None, op: str) -> Fault | None:
        with self._lock:
            for f in self.faults.get(env or "", []):
                if f.on in (op, "any") and (f.times is None or f.times > 0):
                    if f.times is not None:
                        f.times -= 1
                    return f
        return None

    def flag_json(self, flag: FlagState, envs: list[str] | None) -> dict[str, Any]:
        keys = [e for e in self.envs if envs is None or e in envs]
        base = f"/api/v2/flags/{self.project}/{flag.key}"
        return {
            "name": flag.key, "kind": "boolean", "description": "the agent's kill switch",
            "key": flag.key, "_version": flag.version, "creationDate": flag.created,
            "includeInSnippet": False,
            "clientSideAvailability": {"usingMobileKey": False, "usingEnvironmentId": False},
            "variations": [{"_id": "v-on", "value": True, "name": "on"},
                           {"_id": "v-off", "value": False, "name": "off"}],
            "temporary": False, "tags": ["agent", "kill-switch"],
            "_links": {"parent": {"href": "/api/v2/flags/" + self.project, "type": "application/json"},
                       "self": {"href": base, "type": "application/json"}},
            "experiments": {"baselineIdx": 0, "items": []},
            "customProperties": {}, "archived": False, "deprecated": False,
            "defaults": {"onVariation": 0, "offVariation": 1},
            "environments": {
                e: {
                    "on": flag.envs[e].on, "archived": False, "salt": f"salt-{e}", "sel": f"sel-{e}",
                    "lastModified": flag.envs[e].last_modified, "version": flag.envs[e].version,
                    "targets": [], "contextTargets": [], "rules": [],
                    "fallthrough": {"variation": 0}, "offVariation": flag.envs[e].off_variation, "prerequisites": [],
                    "_site": {"href": f"/{self.project}/{e}/features/{flag.key}", "type": "text/html"},
                    "_environmentName": self.envs[e].name,
                    "trackEvents": False, "trackEventsFallthrough": False,
                }
                for e in keys
            },
        }

    def environments_json(self, limit: int, offset: int) -> dict[str, Any]:
        envs = list(self.envs.values())
        page = envs[offset:offset + limit]
        return {
            "_links": {"self": {"href": f"/api/v2/projects/{self.project}/environments", "type": "application/json"}},
            "totalCount": len(envs),
            "items": [
                {
                    "_links": {"self": {"href": f"/api/v2/projects/{self.project}/environments/{e.key}",
                                        "type": "application/json"}},
                    "_id": f"id-{e.key}", "key": e.key, "name": e.name,
                    "apiKey": self.sdk_keys[e.key], "mobileKey": f"mob-{e.key}-not-a-secret",
                    "color": "417505", "defaultTtl": 0, "secureMode": False,
                    "defaultTrackEvents": False, "requireComments": False, "confirmChanges": False,
                    "tags": [], "critical": e.key.startswith("prod"),
                    "approvalSettings": {
                        "required": e.approval_required, "bypassApprovalsForPendingChanges": False,
                        "minNumApprovals": 1, "canReviewOwnRequest": False,
                        "canApplyDeclinedChanges": False, "serviceKind": "launchdarkly",
                        "serviceConfig": {}, "requiredApprovalTags": [],
                    },
                }
                for e in page
            ],
        }


class _Handler(BaseHTTPRequestHandler):
    fake: LaunchDarklyFake
    protocol_version = "HTTP/1.0"  # one request per connection: a cut or a hang touches one call only

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
        pass

    # every method goes through one dispatcher
    def do_GET(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _send(self, status: int, body: dict[str, Any] | None, kind: Any,
              headers: dict[str, str] | None = None) -> None:
        fake = self.fake
        if body is not None and kind is not None:
            try:
                conform(fake._models[kind], body, ERROR_EXTRA_KEYS if isinstance(kind, int) else frozenset())
            except Exception as exc:  # the fake drifted from the API: loud, not silent
                with fake._lock:
                    fake.errors.append(f"{self.command} {self.path} -> {status}: {exc}")
                status, body = 500, {"code": "fake_drift", "message": str(exc)[:500]}
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Ratelimit-Route-Remaining", "100")
        self.send_header("X-Ratelimit-Global-Remaining", "1000")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self._rec.answer = str(status)

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        body = {"code": ERROR_CODES.get(status, "error"), "message": message, "id": str(uuid.uuid4())}
        self._send(status, body, status if status in self.fake._models else None, headers)

    def _dispatch(self) -> None:
        fake = self.fake
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        parts = [unquote(p) for p in url.path.strip("/").split("/")]
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        auth = self.headers.get("Authorization")
        if url.path in ("/all", "/sdk/latest-all"):
            return self._sdk(url.path, auth)
        authed = auth in fake.tokens
        headers = {k: v for k, v in self.headers.items()}
        if "Authorization" in headers:
            headers["Authorization"] = "<valid token>" if authed else "<not a valid token>"

        op, env = "other", None
        if parts[:3] == ["api", "v2", "flags"] and len(parts) == 5:
            op = "read" if self.command == "GET" else "write"
            env = (query.get("env") or [None])[0] if op == "read" else (
                body.get("environmentKey") if isinstance(body, dict) else None)
        elif (parts[:3] == ["api", "v2", "projects"] and len(parts) == 9
              and parts[4] == "flags" and parts[8] == "approval-requests"):
            op, env = ("approval" if self.command == "POST" else "approval-list"), parts[7]
        elif parts[:3] == ["api", "v2", "projects"] and len(parts) == 5 and parts[4] == "environments":
            op = "environments"
        self._rec = Recorded(self.command, url.path, query, headers, body, time.monotonic(), env)
        with fake._lock:
            fake.requests.append(self._rec)

        if not authed:
            return self._error(401, "Invalid access token")
        fault = fake._take_fault(env, op) if op in ("read", "write", "approval", "approval-list") else None
        if fault is not None:
            if fault.kind == "cut":
                self._rec.answer = "cut"
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if fault.kind == "hang":
                self._rec.answer = "hang"
                fake._release.wait(fault.seconds)
                self.close_connection = True
                return
            if fault.kind == "status":
                extra: dict[str, str] = {}
                if fault.retry_after is not None:
                    extra["Retry-After"] = f"{fault.retry_after:g}"
                if fault.reset_in is not None:
                    extra["X-Ratelimit-Reset"] = str(now_ms() + int(fault.reset_in * 1000))
                return self._error(fault.status, fault.message or f"injected {fault.status}", extra)
        if parts[0:2] != ["api", "v2"] or len(parts) < 4 or parts[3] != fake.project:
            return self._error(404, "Unknown resource")
        if op == "read":
            return self._read(parts[4], query.get("env"))
        if op == "write":
            return self._patch(parts[4], body, query, stuck=fault is not None and fault.kind == "stuck_on")
        if op == "approval":
            return self._approval(parts[5], env, body)
        if op == "approval-list" and self.command == "GET":
            with fake._lock:
                doc = fake.approvals_json(parts[5], env) if parts[5] in fake.flags and env in fake.envs else None
            if doc is None:
                return self._error(404, "Unknown resource")
            return self._send(200, doc, "approvals")
        if op == "environments" and self.command == "GET":
            limit = int((query.get("limit") or ["20"])[0])
            offset = int((query.get("offset") or ["0"])[0])
            with fake._lock:
                doc = fake.environments_json(limit, offset)
            return self._send(200, doc, "environments")
        return self._error(404, "Unknown resource")

    def _sdk(self, path: str, key: str | None) -> None:
        """The server-side SDK endpoints: streaming (/all) and polling (/sdk/latest-all)."""
        fake = self.fake
        env = next((e for e, k in fake.sdk_keys.items() if k == key), None)
        self._rec = Recorded(self.command, path, {}, {"Authorization": "<sdk key>" if env else "<not an sdk key>"},
                             None, time.monotonic(), env)
        with fake._lock:
            fake.requests.append(self._rec)
        if env is None:
            return self._error(401, "Invalid SDK key")
        mode = fake.sdk_modes.get(env, "ok")
        if mode == "hang":
            self._rec.answer = "hang"
            fake._release.wait(60)
            self.close_connection = True
            return
        if mode == "down":
            return self._error(503, "service unavailable")
        if path == "/sdk/latest-all":
            with fake._lock:
                data = json.dumps(fake.sdk_data(env)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            self._rec.answer = "200"
            return
        # a stream is chunked (HTTP/1.1), as LaunchDarkly sends it: the SDK's SSE reader reads
        # chunk by chunk, and would wait for 10 kB of an unchunked HTTP/1.0 body
        self.protocol_version = "HTTP/1.1"
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self._rec.answer = "stream"
        with fake._lock:
            data = fake.sdk_data(env)
        sent = {k: f["version"] for k, f in data["flags"].items()}
        try:
            self._event("put", {"path": "/", "data": data})
            while not fake._release.is_set():
                with fake._lock:
                    fake._changed.wait(0.5)
                    mode = fake.sdk_modes.get(env, "ok")
                    changed = [fake.sdk_flag(f, env) for k, f in fake.flags.items()
                               if f.envs[env].version != sent.get(k)]
                if mode == "down":
                    return  # the connection drops
                if mode == "hang":
                    continue  # open, but silent
                for flag in changed:
                    self._event("patch", {"path": f"/flags/{flag['key']}", "data": flag})
                    sent[flag["key"]] = flag["version"]
                if not changed:
                    self._chunk(b":\n\n")  # a comment: finds a client that went away
        except (BrokenPipeError, ConnectionResetError, OSError):
            return

    def _event(self, name: str, body: dict[str, Any]) -> None:
        self._chunk(f"event: {name}\ndata: {json.dumps(body)}\n\n".encode())

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _read(self, key: str, envs: list[str] | None) -> None:
        with self.fake._lock:
            flag = self.fake.flags.get(key)
            doc = self.fake.flag_json(flag, envs) if flag else None
        if doc is None:
            return self._error(404, "Unknown resource")
        self._send(200, doc, "flag")

    def _patch(self, key: str, body: Any, query: dict[str, list[str]], *, stuck: bool) -> None:
        fake = self.fake
        if SEMANTIC_PATCH_MARKER not in (self.headers.get("Content-Type") or ""):
            # the real API reads the body as a JSON patch, which a semantic patch is not
            return self._error(400, "Invalid JSON patch: expected an array of operations")
        if not isinstance(body, dict) or not isinstance(body.get("instructions"), list) or not body["instructions"]:
            return self._error(400, "instructions is required")
        kinds = [i.get("kind") if isinstance(i, dict) else None for i in body["instructions"]]
        if any(k not in ("turnFlagOn", "turnFlagOff") for k in kinds):
            return self._error(400, f"unsupported instruction kind in {kinds}")
        env = body.get("environmentKey")
        dry = (query.get("dryRun") or ["false"])[0] == "true"
        with fake._lock:
            flag = fake.flags.get(key)
            if flag is None:
                return self._error(404, "Unknown resource")
            if env not in fake.envs:
                return self._error(400, "environmentKey is required for these instructions and must exist")
            if fake.envs[env].approval_required:
                return self._error(405, "This environment requires approval for changes to flags")
            state = flag.envs[env]
            want = kinds[-1] == "turnFlagOn"
            if dry:  # a preview: the flag as it would be, nothing stored
                saved = (state.on, state.version, state.last_modified, flag.version)
                state.on = want
                doc = fake.flag_json(flag, None)
                state.on, state.version, state.last_modified, flag.version = saved
            else:
                if state.on != want and not stuck:
                    state.on = want
                    state.version += 1
                    state.last_modified = now_ms()
                    flag.version += 1
                    fake._changed.notify_all()
                doc = fake.flag_json(flag, None)
        self._send(200, doc, "flag")

    def _approval(self, key: str, env: str | None, body: Any) -> None:
        fake = self.fake
        if not isinstance(body, dict) or not body.get("description") or not isinstance(body.get("instructions"), list):
            return self._error(400, "description and instructions are required")
        with fake._lock:
            if key not in fake.flags or env not in fake.envs:
                return self._error(404, "Unknown resource")
            doc = fake._approval_doc(key, env, body["description"], body["instructions"])
            fake.approvals.append({**doc, "flag": key, "env": env})
        self._send(201, doc, "approval")


@pytest.fixture
def launchdarkly_fake() -> Iterator[LaunchDarklyFake]:
    """A started fake with environments production, staging, eu and flag agent.enabled on everywhere."""
    fake = LaunchDarklyFake()
    for env in ("production", "staging", "eu"):
        fake.add_env(env)
    fake.add_flag("agent.enabled", on=True)
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()
    assert not fake.errors, "the LaunchDarkly fake drifted from the API models:\n" + "\n".join(fake.errors)
