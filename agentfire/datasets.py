"""`capture --push`: the regression case as a Langfuse dataset item and a Phoenix dataset example.

Both are upserts keyed by the case id, so a retry (after a 5xx that the server had in fact
processed, or a second capture) never duplicates the case. Nothing is reported CONFIRMED without
a read-back (DESIGN.md rule 1): the item is listed back from the server and compared.

Langfuse: `POST /api/public/v2/datasets {name}` (upsert by name, so the dataset is created if
missing), `POST /api/public/dataset-items {datasetName, id, input, expectedOutput, metadata,
sourceTraceId, sourceObservationId}` (upsert on id), read back with
`GET /api/public/dataset-items?datasetName=&sourceTraceId=`. Basic auth: public key as user,
secret key as password. Phoenix: `POST /v1/datasets/upload?sync=true` with action "append" and
`example_ids` (Phoenix matches examples on that id and creates the dataset when missing), read
back with `GET /v1/datasets?name=` and `GET /v1/datasets/{id}/examples`.

httpx is imported inside the functions: `agentfire --help` never pays for it.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from typing import Any

from agentfire.errors import ConfigError

DEADLINE_S = 30.0


@dataclass
class PushOutcome:
    target: str  # "langfuse" | "phoenix"
    outcome: str  # CONFIRMED, MISMATCH, AUTH, NOT_FOUND, RATE_LIMITED, UNREACHABLE, TIMEOUT, ERROR
    dataset: str
    item_id: str
    detail: str = ""
    latency_ms: int = 0

    @property
    def ok(self) -> bool:
        return self.outcome == "CONFIRMED"

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "outcome": self.outcome, "dataset": self.dataset,
                "item_id": self.item_id, "detail": self.detail, "latency_ms": self.latency_ms}


def dataset_name(runbook: Any) -> str:
    return runbook.model.evals.langfuse_dataset or f"{runbook.agent.name}-regressions"


# --- mapping ----------------------------------------------------------------------------------


def langfuse_item(case: dict[str, Any], dataset: str) -> dict[str, Any]:
    """The CreateDatasetItemRequest body for a case (README: mapping to a Langfuse item)."""
    return {
        "datasetName": dataset,
        "id": case["id"],
        "input": case["vars"],
        "expectedOutput": {"expected": case["expected"], "golden_tools": case.get("golden_tools")},
        "metadata": _metadata(case),
        "sourceTraceId": case["source_trace_id"],
        "sourceObservationId": case["off_rails"].get("observation_id"),
    }


def _metadata(case: dict[str, Any]) -> dict[str, Any]:
    off = case["off_rails"]
    return {
        "case_id": case["id"], "incident": case.get("incident"),
        "source_trace_id": case["source_trace_id"],
        "off_rails": {k: off.get(k) for k in ("step", "observation_id", "kind", "name", "why",
                                              "finding")},
        "off_rails_input": off.get("input"),
        "captured_at": case.get("captured_at"), "actor": case.get("actor"),
        "tags": case.get("tags", []),
    }


def phoenix_upload(case: dict[str, Any], dataset: str) -> dict[str, Any]:
    """The JSON body of POST /v1/datasets/upload for one case."""
    return {
        "action": "append",
        "name": dataset,
        "description": "agentfire regression cases (agentfire capture --push)",
        "inputs": [case["vars"]],
        "outputs": [{"expected": case["expected"], "golden_tools": case.get("golden_tools")}],
        "metadata": [_metadata(case)],
        "example_ids": [case["id"]],
    }


# --- where to push ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LangfuseTarget:
    base_url: str
    public_key: str
    secret_key: str
    timeout_s: float = 10.0


@dataclass(frozen=True)
class PhoenixTarget:
    url: str
    api_key: str | None
    timeout_s: float = 10.0


def langfuse_target(runbook: Any) -> LangfuseTarget | None:
    """From the runbook's langfuse trace store, else the LANGFUSE_* environment; None if neither."""
    from agentfire.secrets import secret

    section = runbook.traces
    if getattr(section, "kind", None) == "langfuse":
        base = section.base_url or os.environ.get(section.base_url_env) \
            or os.environ.get("LANGFUSE_HOST")
        if not base:
            raise ConfigError(
                f"traces.base_url is not set and ${section.base_url_env} is empty (Langfuse URL)")
        pk_env, sk_env, timeout = section.public_key_env, section.secret_key_env, \
            section.timeout_seconds
    else:
        base = os.environ.get("LANGFUSE_BASE_URL") or os.environ.get("LANGFUSE_HOST")
        if not base:
            return None
        pk_env, sk_env, timeout = "LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY", 10.0
    return LangfuseTarget(
        base.rstrip("/"),
        secret(pk_env, what="Langfuse public key"),
        secret(sk_env, what="Langfuse secret key"),
        timeout,
    )


def phoenix_target(runbook: Any) -> PhoenixTarget | None:
    from agentfire.secrets import secret

    section = runbook.traces
    if getattr(section, "kind", None) != "phoenix":
        return None
    key = secret(section.api_key_env, what="Phoenix API key") if section.api_key_env else None
    return PhoenixTarget(section.url.rstrip("/"), key, section.timeout_seconds)


@dataclass(frozen=True)
class PushTargets:
    langfuse: LangfuseTarget | None
    phoenix: PhoenixTarget | None
    dataset: str
    phoenix_dataset: str


def push_targets(runbook: Any) -> PushTargets:
    """Where --push goes; a ConfigError (before anything is written) when nowhere or no keys."""
    lf, px = langfuse_target(runbook), phoenix_target(runbook)
    if lf is None and px is None:
        raise ConfigError(
            "--push has nowhere to push: set LANGFUSE_BASE_URL (with LANGFUSE_PUBLIC_KEY and "
            "LANGFUSE_SECRET_KEY), or use a langfuse or phoenix trace store in runbook.yaml"
        )
    name = dataset_name(runbook)
    return PushTargets(lf, px, name, runbook.model.evals.phoenix_dataset or name)


def push_case(targets: PushTargets, case: dict[str, Any], *,
              deadline_s: float = DEADLINE_S) -> list[PushOutcome]:
    """Upsert the case everywhere it belongs, concurrently; one outcome per target."""
    deadline = time.monotonic() + deadline_s

    async def run() -> list[PushOutcome]:
        jobs = []
        if targets.langfuse is not None:
            jobs.append(push_langfuse(case, targets.langfuse, targets.dataset, deadline=deadline))
        if targets.phoenix is not None:
            jobs.append(push_phoenix(case, targets.phoenix, targets.phoenix_dataset,
                                     deadline=deadline))
        return list(await asyncio.gather(*jobs))

    return asyncio.run(run())


# --- HTTP -------------------------------------------------------------------------------------


async def _call(client: Any, method: str, url: str, *, deadline: float, **kw: Any) -> Any:
    """One bounded request; upserts are idempotent, so transport errors are retried too."""
    from agentfire._http import RetryPolicy, request

    return await request(client, method, url, policy=RetryPolicy(max_retries=3, cap_seconds=5.0),
                         deadline=deadline, idempotent=True, **kw)


class _Refused(Exception):
    def __init__(self, outcome: str, detail: str):
        super().__init__(detail)
        self.outcome = outcome
        self.detail = detail


def _check(resp: Any, what: str) -> Any:
    if resp.status_code in (401, 403):
        raise _Refused("AUTH", f"{what}: HTTP {resp.status_code} (credentials refused)")
    if resp.status_code == 404:
        raise _Refused("NOT_FOUND", f"{what}: HTTP 404 {_short(resp.text)}")
    if resp.status_code >= 300:
        raise _Refused("ERROR", f"{what}: HTTP {resp.status_code} {_short(resp.text)}")
    try:
        return resp.json()
    except ValueError:
        raise _Refused("ERROR", f"{what}: answer is not JSON") from None


def _short(text: str, limit: int = 200) -> str:
    from agentfire.textsafe import safe

    return safe(text.strip(), limit, keep_newlines=False)


async def _guarded(target: str, dataset: str, item_id: str, body: Any) -> PushOutcome:
    """Run a push coroutine, mapping every failure to an outcome (never an exception)."""
    import httpx

    from agentfire._http import RetriesExhausted

    started = time.monotonic()
    try:
        detail = await body
        outcome = "CONFIRMED"
    except _Refused as exc:
        outcome, detail = exc.outcome, exc.detail
    except RetriesExhausted as exc:
        code = exc.response.status_code
        outcome = "RATE_LIMITED" if code == 429 else "ERROR"
        detail = f"HTTP {code} after {exc.tries} tries"
    except (asyncio.TimeoutError, httpx.TimeoutException):
        outcome, detail = "TIMEOUT", "no answer before the deadline"
    except httpx.TransportError as exc:
        outcome, detail = "UNREACHABLE", f"{type(exc).__name__}: {exc}"
    except (httpx.HTTPError, httpx.InvalidURL) as exc:  # e.g. a base URL that is not one
        outcome, detail = "ERROR", f"{type(exc).__name__}: {exc}"
    return PushOutcome(target, outcome, dataset, item_id, detail,
                       int((time.monotonic() - started) * 1000))


async def push_langfuse(case: dict[str, Any], target: LangfuseTarget, dataset: str, *,
                        deadline: float) -> PushOutcome:
    import httpx

    item = langfuse_item(case, dataset)

    async def body() -> str:
        async with httpx.AsyncClient(
            base_url=target.base_url, auth=(target.public_key, target.secret_key),
            timeout=target.timeout_s, headers={"User-Agent": "agentfire"},
        ) as client:
            _check(await _call(client, "POST", "/api/public/v2/datasets",
                               json={"name": dataset}, deadline=deadline), "create dataset")
            _check(await _call(client, "POST", "/api/public/dataset-items", json=item,
                               deadline=deadline), "upsert dataset item")
            return await _langfuse_read_back(client, item, deadline)

    return await _guarded("langfuse", dataset, case["id"], body())


async def _langfuse_read_back(client: Any, item: dict[str, Any], deadline: float) -> str:
    page, found = 1, []
    while True:
        doc = _check(await _call(
            client, "GET", "/api/public/dataset-items", deadline=deadline,
            params={"datasetName": item["datasetName"], "sourceTraceId": item["sourceTraceId"],
                    "page": page, "limit": 100},
        ), "read back")
        found += [d for d in doc.get("data", []) if d.get("id") == item["id"]]
        total_pages = (doc.get("meta") or {}).get("totalPages") or 1
        if page >= total_pages or not doc.get("data"):
            break
        page += 1
    if len(found) != 1:
        raise _Refused("MISMATCH", f"read back {len(found)} items with id {item['id']}, not 1")
    got = found[0]
    wrong = [k for k in ("input", "expectedOutput", "sourceTraceId", "sourceObservationId")
             if got.get(k) != item[k]]
    if wrong:
        raise _Refused("MISMATCH", f"read back differs in {', '.join(wrong)}")
    return f"dataset item {item['id']} in {item['datasetName']} (read back)"


async def push_phoenix(case: dict[str, Any], target: PhoenixTarget, dataset: str, *,
                       deadline: float) -> PushOutcome:
    import httpx

    upload = phoenix_upload(case, dataset)
    headers = {"User-Agent": "agentfire"}
    if target.api_key:
        headers["Authorization"] = f"Bearer {target.api_key}"

    async def body() -> str:
        async with httpx.AsyncClient(base_url=target.url, timeout=target.timeout_s,
                                     headers=headers) as client:
            doc = _check(await _call(client, "POST", "/v1/datasets/upload",
                                     params={"sync": "true"}, json=upload, deadline=deadline),
                         "upload example")
            data = (doc or {}).get("data") or {}
            dataset_id = data.get("dataset_id")
            if not dataset_id:
                raise _Refused("ERROR", "upload answered without a dataset_id")
            ex = _check(await _call(client, "GET", f"/v1/datasets/{dataset_id}/examples",
                                    deadline=deadline), "read back")
            examples = ((ex or {}).get("data") or {}).get("examples") or []
            mine = [e for e in examples if (e.get("metadata") or {}).get("case_id") == case["id"]]
            if len(mine) != 1:
                raise _Refused("MISMATCH", f"read back {len(mine)} examples for {case['id']}, not 1")
            if mine[0].get("input") != upload["inputs"][0]:
                raise _Refused("MISMATCH", "read back input differs")
            return (f"example {mine[0].get('id')} in {dataset} "
                    f"(created {data.get('num_created_examples', '?')}, "
                    f"updated {data.get('num_updated_examples', '?')}; read back)")

    return await _guarded("phoenix", dataset, case["id"], body())
