"""What real instrumentations write, mapped into the one Trajectory (the only place that knows).

Two layers, both used by every trace store:

1. `span_to_row(span)`: one OpenTelemetry span as the Phoenix REST API returns it (attributes
   flattened to dotted keys, `events`) -> an observation row of the `files` store format. Reads
   - OpenInference: `openinference.span.kind`, `tool.name` (not the span name: smolagents calls
     every tool span `SimpleTool`), arguments from `input.value` (`tool.parameters` is the tool's
     JSON schema, never its arguments), `output.value`, `llm.output_messages.N.message.content` /
     `.contents.N.message_content.text` / `.tool_calls.N.tool_call.{id,function.name,function.arguments}`,
     `llm.input_messages.*`, `llm.token_count.*`, `llm.model_name`, `llm.cost.total`, `user.id`,
     `session.id`, `metadata`;
   - the OTel GenAI conventions: `gen_ai.operation.name` (chat / execute_tool / invoke_agent),
     `gen_ai.tool.name`, `gen_ai.tool.call.id|arguments|result`, `gen_ai.input.messages` /
     `gen_ai.output.messages` (JSON parts), the older message events (`gen_ai.user.message`,
     `gen_ai.choice`, ...), `gen_ai.usage.input_tokens|output_tokens`, `gen_ai.request.model` /
     `gen_ai.response.model`, `operation.cost` (pydantic-ai's computed price), `enduser.id`;
   - an ERROR status (message from the status or the exception event).
2. `normalise(traj)`: on the Trajectory built from any store's rows (Langfuse SDK observations,
   the files store, the rows of layer 1), the framework envelopes unwrapped and the model made
   uniform:
   - every model step's output in the canonical shape
     {"role": "assistant", "content": text or None, "tool_calls": [{"id", "name", "arguments"}]}
     (from LangChain AIMessage / LLMResult / `{"name","args"}` tool calls, OpenAI Chat Completion
     messages and Responses objects, GenAI parts, smolagents ChatMessage);
   - tool steps: arguments as a dict (smolagents `{"args","kwargs"}` unwrapped; a LangChain
     one-argument tool recorded as a bare string gets its argument name from the calling model
     step's tool call, matched by id), `tool_call_id`, outputs out of LangChain ToolMessage
     envelopes (an error ToolMessage is level ERROR); arguments a tracer redacted are None with
     `not_recorded` saying so;
   - the root input is the user's request (LangGraph `{"messages": [...]}`, smolagents `task`,
     else the first user message a model step received);
   - an error on an agent step under a root that ended OK makes the trajectory an error;
   - plumbing steps (LangGraph nodes, RunnableSequence, prompts, routing functions, the Agents
     SDK's `Agent workflow` / `turn` / agent spans, smolagents `Step N`) are marked `plumbing`:
     tables fold them away, `--json` / `--full` keep them;
   - steps in one millisecond are ordered by the span tree (parents before children, then
     depth-first), not by their random ids.
"""

from __future__ import annotations

import json
import re
from typing import Any

# --- small helpers ---------------------------------------------------------------------------


def loads(value: Any) -> Any:
    """A JSON string parsed (once; nested JSON strings are left to the callers), else as is."""
    if isinstance(value, str):
        text = value.strip()
        if text[:1] in ("{", "[", '"'):
            try:
                return json.loads(text)
            except (ValueError, RecursionError):
                return value
    return value


def unflatten(flat: dict[str, Any], prefix: str) -> Any:
    """The dotted keys under `prefix.` rebuilt into a nested value (digit keys become lists)."""
    root: dict[str, Any] = {}
    for k, v in flat.items():
        if not k.startswith(prefix + "."):
            continue
        parts = k[len(prefix) + 1:].split(".")
        node = root
        for p in parts[:-1]:
            nxt = node.get(p)
            if not isinstance(nxt, dict):
                nxt = node[p] = {}
            node = nxt
        node[parts[-1]] = v
    return _lists(root) if root else None


def _lists(v: Any) -> Any:
    if isinstance(v, dict):
        v = {k: _lists(x) for k, x in v.items()}
        if v and all(k.isdigit() for k in v):
            return [v[k] for k in sorted(v, key=int)]
    return v


def flatten(attrs: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested attribute dicts (some Phoenix versions) -> dotted keys, as the REST API sends them."""
    out: dict[str, Any] = {}
    for k, v in attrs.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _first(attrs: dict[str, Any], *keys: str) -> Any:
    return next((attrs[k] for k in keys if attrs.get(k) not in (None, "")), None)


def _int(v: Any) -> int | None:
    try:
        return int(v) if v is not None and not isinstance(v, bool) else None
    except (TypeError, ValueError):
        return None


def _num(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else (None if value is None else json.dumps(value, ensure_ascii=False))


# --- span -> observation row (OpenInference + OTel GenAI) ---------------------------------------

SPAN_KIND_TO_TYPE = {
    "TOOL": "TOOL", "LLM": "GENERATION", "AGENT": "AGENT", "CHAIN": "CHAIN",
    "RETRIEVER": "RETRIEVER", "RERANKER": "RETRIEVER", "EMBEDDING": "EMBEDDING",
    "EVALUATOR": "EVALUATOR", "GUARDRAIL": "GUARDRAIL", "PROMPT": "SPAN",
}
GENAI_OPERATION_TO_TYPE = {
    "chat": "GENERATION", "text_completion": "GENERATION", "generate_content": "GENERATION",
    "execute_tool": "TOOL", "invoke_agent": "AGENT", "create_agent": "AGENT", "embeddings": "EMBEDDING",
}
NOT_RECORDED = "not recorded"


def span_type(attrs: dict[str, Any], span_kind: Any = None) -> str:
    kind = str(span_kind or attrs.get("openinference.span.kind") or "").upper()
    if kind in SPAN_KIND_TO_TYPE and kind not in ("CHAIN", "UNKNOWN", ""):
        return SPAN_KIND_TO_TYPE[kind]
    op = str(attrs.get("gen_ai.operation.name") or "").lower()
    if op in GENAI_OPERATION_TO_TYPE:
        return GENAI_OPERATION_TO_TYPE[op]
    return SPAN_KIND_TO_TYPE.get(kind, "SPAN")


def _oi_messages(attrs: dict[str, Any], prefix: str) -> list[dict[str, Any]] | None:
    """OpenInference `llm.input_messages` / `llm.output_messages` -> canonical messages."""
    raw = unflatten(attrs, prefix)
    if not isinstance(raw, list):
        return None
    out = []
    for item in raw:
        msg = item.get("message") if isinstance(item, dict) else None
        if not isinstance(msg, dict):
            continue
        content = msg.get("content")
        if content is None and isinstance(msg.get("contents"), list):
            texts = [c.get("message_content", {}).get("text") for c in msg["contents"] if isinstance(c, dict)]
            texts = [t for t in texts if isinstance(t, str)]
            content = "\n".join(texts) if texts else None
        calls = []
        for tc in msg.get("tool_calls") or []:
            call = tc.get("tool_call", tc) if isinstance(tc, dict) else {}
            fn = call.get("function") or {}
            calls.append({"id": call.get("id"), "name": fn.get("name"), "arguments": _args(fn.get("arguments"))})
        m: dict[str, Any] = {"role": msg.get("role") or "assistant", "content": content}
        if calls:
            m["tool_calls"] = calls
        if msg.get("tool_call_id"):
            m["tool_call_id"] = msg["tool_call_id"]
        out.append(m)
    return out or None


def _genai_messages(value: Any) -> list[dict[str, Any]] | None:
    """OTel GenAI `gen_ai.input.messages` / `gen_ai.output.messages` (role + parts) -> canonical."""
    value = loads(value)
    if not isinstance(value, list):
        return None
    out = []
    for msg in value:
        if not isinstance(msg, dict):
            continue
        parts = msg.get("parts")
        if not isinstance(parts, list):
            out.append(canonical_message(msg) or {"role": msg.get("role"), "content": msg.get("content")})
            continue
        texts, calls, results = [], [], []
        for p in parts:
            if not isinstance(p, dict):
                continue
            t = p.get("type")
            if t == "text" and isinstance(p.get("content"), str):
                texts.append(p["content"])
            elif t == "tool_call":
                calls.append({"id": p.get("id"), "name": p.get("name"), "arguments": _args(p.get("arguments"))})
            elif t == "tool_call_response":
                results.append(p)
        m: dict[str, Any] = {"role": msg.get("role") or "assistant", "content": "\n".join(texts) if texts else None}
        if calls:
            m["tool_calls"] = calls
        if results:
            m["tool_results"] = results
        out.append(m)
    return out or None


def _genai_events(events: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The older GenAI message events: (input messages, output messages)."""
    inputs, outputs = [], []
    for e in events or []:
        if not isinstance(e, dict):
            continue
        name = str(e.get("name") or "")
        a = e.get("attributes") or {}
        if not name.startswith("gen_ai."):
            continue
        if a.get("message") is not None:  # the choice event's body.message, as an attribute
            msg = loads(a["message"])
            msg = msg if isinstance(msg, dict) else {"content": msg}
        else:
            body = loads(a.get("gen_ai.event.content") or a.get("content") or a.get("body"))
            msg = body.get("message", body) if isinstance(body, dict) else {"content": body}
            if isinstance(msg, dict) and "role" not in msg and "content" not in msg and "tool_calls" not in msg:
                msg = {"content": body}
        if name == "gen_ai.choice":
            m = canonical_message(msg if isinstance(msg, dict) else {"content": msg}) or {}
            m.setdefault("role", "assistant")
            outputs.append(m)
        elif name.endswith(".message"):
            role = name[len("gen_ai."):-len(".message")]
            m = dict(msg) if isinstance(msg, dict) else {"content": msg}
            m.setdefault("role", a.get("role") or role)
            inputs.append(m)
    return inputs, outputs


def _error_message(span: dict[str, Any]) -> str | None:
    msg = span.get("status_message") or None
    for e in span.get("events") or []:
        if isinstance(e, dict) and e.get("name") == "exception":
            a = e.get("attributes") or {}
            em = a.get("exception.message")
            et = a.get("exception.type")
            if em and (not msg or len(msg) > 300):
                return f"{str(et).rsplit('.', 1)[-1]}: {em}" if et else str(em)
    if msg and "Traceback" in msg:
        msg = msg.split("Traceback", 1)[0].strip() or msg
    return msg


def span_to_row(span: dict[str, Any]) -> dict[str, Any]:
    """One span (Phoenix REST shape: name, context, span_kind, parent_id, start_time, end_time,
    status_code, status_message, attributes, events) as an observation row."""
    attrs = flatten(span.get("attributes") or {})
    ctx = span.get("context") or {}
    typ = attrs.get("agentfire.observation_type") or span_type(attrs, span.get("span_kind"))
    name = span.get("name") or attrs.get("tool.name")
    inp: Any = attrs.get("input.value")
    out: Any = attrs.get("output.value")
    metadata = attrs.get("metadata")
    if isinstance(metadata, str):
        parsed = loads(metadata)
        metadata = parsed if isinstance(parsed, dict) else {"metadata": metadata}
    if metadata is None:
        metadata = unflatten(attrs, "metadata")
    metadata = dict(metadata) if isinstance(metadata, dict) else {}
    not_recorded: list[str] = []
    if typ == "TOOL":
        name = _first(attrs, "tool.name", "gen_ai.tool.name") or name
        call_id = _first(attrs, "gen_ai.tool.call.id", "tool.id", "tool_call.id")
        if call_id:
            metadata["tool_call_id"] = str(call_id)
        if inp is None:
            inp = _first(attrs, "gen_ai.tool.call.arguments", "tool_arguments")
        if out is None:
            out = _first(attrs, "gen_ai.tool.call.result", "tool_response")
        if inp is None and not attrs.get("agentfire.observation_id"):
            not_recorded.append("arguments")
    elif typ == "GENERATION":
        outs = (_oi_messages(attrs, "llm.output_messages")
                or _genai_messages(attrs.get("gen_ai.output.messages")))
        ins = (_oi_messages(attrs, "llm.input_messages")
               or _genai_messages(attrs.get("gen_ai.input.messages")))
        ev_in, ev_out = _genai_events(span.get("events"))
        outs = outs or ev_out or None
        ins = ins or ev_in or None
        if outs:
            out = merge_assistant(outs)
        elif out is not None:
            out = canonical_output(loads(out)) or out
        if ins and (inp is None or isinstance(loads(inp), dict) and "messages" in loads(inp)):
            inp = ins
        if out is None and not attrs.get("agentfire.observation_id"):
            not_recorded.append("output")
    usage = {k: n for k, n in (
        ("input", _int(_first(attrs, "llm.token_count.prompt", "gen_ai.usage.input_tokens",
                              "gen_ai.usage.prompt_tokens"))),
        ("output", _int(_first(attrs, "llm.token_count.completion", "gen_ai.usage.output_tokens",
                               "gen_ai.usage.completion_tokens"))),
        ("total", _int(attrs.get("llm.token_count.total")))) if n is not None}
    if typ != "GENERATION":  # an agent span's aggregated usage would double-count its model calls
        usage = {}
    status = str(span.get("status_code") or "").upper()
    level = "ERROR" if status == "ERROR" else str(attrs.get("agentfire.level") or "DEFAULT")
    message = (_error_message(span) if status == "ERROR" else None) or attrs.get("agentfire.status_message") or None
    cost = _num(_first(attrs, "llm.cost.total", "operation.cost", "gen_ai.usage.cost"))
    tags = attrs.get("tag.tags")
    user = _first(attrs, "user.id", "enduser.id", "langfuse.user.id") or metadata.get("user_id") or metadata.get("userId")
    session = (_first(attrs, "session.id", "langfuse.session.id") or metadata.get("session_id")
               or attrs.get("gen_ai.conversation.id"))
    if metadata.get("session_id") and attrs.get("session.id") == attrs.get("gen_ai.conversation.id"):
        session = metadata["session_id"]  # pydantic-ai copies its conversation id into session.id
    row = {
        "id": str(attrs.get("agentfire.observation_id") or ctx.get("span_id") or span.get("id")),
        "traceId": str(attrs.get("agentfire.trace_id") or ctx.get("trace_id") or ""),
        "spanId": ctx.get("span_id"),
        "parentObservationId": span.get("parent_id"),
        "isRootObservation": span.get("parent_id") is None,
        "type": typ, "name": name,
        "startTime": span.get("start_time"), "endTime": span.get("end_time"),
        "input": _text(inp), "output": _text(out),
        "userId": str(user) if user else None, "sessionId": str(session) if session else None,
        "model": _first(attrs, "llm.model_name", "gen_ai.response.model", "gen_ai.request.model"),
        "usageDetails": usage or None,
        "totalCost": cost if typ == "GENERATION" or attrs.get("agentfire.observation_id") else None,
        "level": level, "statusMessage": message,
        "metadata": metadata,
        "tags": list(tags) if isinstance(tags, list) else None,
    }
    if not_recorded:
        row["notRecorded"] = not_recorded
    if row["parentObservationId"] is None and typ != "GENERATION":
        # the user's request where the root span carries it in a framework-specific attribute
        user_input = _first(attrs, "smolagents.task")
        if user_input is not None and inp is None:
            row["input"] = _text(user_input)
        if "pydantic_ai.all_messages" in attrs and inp is None:
            msgs = _genai_messages(attrs["pydantic_ai.all_messages"]) or []
            first_user = next((m.get("content") for m in msgs if m.get("role") == "user" and m.get("content")), None)
            if first_user is not None:
                row["input"] = _text(first_user)
        if out is None and attrs.get("final_result") is not None:
            row["output"] = _text(attrs["final_result"])
    return row


# --- envelopes -> canonical -------------------------------------------------------------------


def _args(value: Any) -> Any:
    """Tool-call arguments: a dict when they parse as a JSON object, else as recorded."""
    parsed = loads(value)
    return parsed if isinstance(parsed, dict) else value


def _content_text(content: Any) -> str | None:
    if content is None:
        return None
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content blocks
        texts = []
        for b in content:
            if isinstance(b, str):
                texts.append(b)
            elif isinstance(b, dict) and isinstance(b.get("text"), str):
                texts.append(b["text"])
        return "\n".join(texts) if texts else None
    return None


def _canonical_call(c: Any) -> dict[str, Any] | None:
    if not isinstance(c, dict):
        return None
    fn = c.get("function") if isinstance(c.get("function"), dict) else None
    if fn is not None:  # OpenAI chat completions / smolagents
        return {"id": c.get("id") or c.get("call_id"), "name": fn.get("name"), "arguments": _args(fn.get("arguments"))}
    if c.get("type") == "function_call" or "call_id" in c:  # OpenAI Responses
        return {"id": c.get("call_id") or c.get("id"), "name": c.get("name"), "arguments": _args(c.get("arguments"))}
    if "args" in c:  # LangChain
        return {"id": c.get("id"), "name": c.get("name"), "arguments": _args(c.get("args"))}
    if "name" in c and "arguments" in c:
        return {"id": c.get("id"), "name": c.get("name"), "arguments": _args(c.get("arguments"))}
    if c.get("type") == "tool_use":  # Anthropic content block
        return {"id": c.get("id"), "name": c.get("name"), "arguments": _args(c.get("input"))}
    return None


def canonical_message(msg: Any) -> dict[str, Any] | None:
    """One assistant message in any of the known shapes -> canonical, else None."""
    if not isinstance(msg, dict):
        return None
    if msg.get("lc") == 1 and isinstance(msg.get("kwargs"), dict):  # LangChain serialised message
        kind = (msg.get("id") or [""])[-1]
        inner = dict(msg["kwargs"])
        inner.setdefault("type", {"AIMessage": "ai", "HumanMessage": "human", "ToolMessage": "tool",
                                  "SystemMessage": "system"}.get(kind, kind))
        return canonical_message(inner)
    if isinstance(msg.get("data"), dict) and msg.get("type") in ("ai", "human", "tool", "system", "AIMessageChunk"):
        inner = dict(msg["data"])
        inner.setdefault("type", msg["type"])
        return canonical_message(inner)
    role = msg.get("role")
    typ = msg.get("type")
    if role is None and typ in ("ai", "AIMessageChunk"):
        role = "assistant"
    elif role is None and typ == "human":
        role = "user"
    elif role is None and typ in ("tool", "system"):
        role = typ
    if role is None or not isinstance(role, str):
        return None
    role = {"MessageRole.ASSISTANT": "assistant", "ai": "assistant", "human": "user"}.get(role, role)
    content = msg.get("content")
    text = _content_text(content)
    raw_calls = msg.get("tool_calls")
    calls = []
    if isinstance(raw_calls, list):
        calls = [c for c in (_canonical_call(x) for x in raw_calls) if c]
    if isinstance(content, list):
        calls += [c for c in (_canonical_call(b) for b in content if isinstance(b, dict) and b.get("type") == "tool_use") if c]
    out: dict[str, Any] = {"role": role, "content": text}
    if calls or role == "assistant":
        out["tool_calls"] = calls
    if msg.get("tool_call_id"):
        out["tool_call_id"] = msg["tool_call_id"]
    return out


def merge_assistant(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """Several output messages of one model call (Responses: a text item, then call items) -> one."""
    texts = [m.get("content") for m in messages if isinstance(m.get("content"), str) and m.get("content")]
    calls = [c for m in messages for c in (m.get("tool_calls") or [])]
    return {"role": "assistant", "content": "\n".join(texts) if texts else None, "tool_calls": calls}


def canonical_output(value: Any) -> dict[str, Any] | None:
    """A model step's recorded output in any known envelope -> canonical, else None."""
    if isinstance(value, str):
        return {"role": "assistant", "content": value, "tool_calls": []}
    if isinstance(value, list):
        msgs = [m for m in (canonical_message(x) for x in value) if m and m["role"] == "assistant"]
        return merge_assistant(msgs) if msgs else None
    if not isinstance(value, dict):
        return None
    if isinstance(value.get("generations"), list):  # LangChain LLMResult
        msgs = []
        for gen_list in value["generations"]:
            for g in gen_list if isinstance(gen_list, list) else [gen_list]:
                if not isinstance(g, dict):
                    continue
                m = canonical_message(g.get("message")) if g.get("message") else None
                msgs.append(m or {"role": "assistant", "content": g.get("text"), "tool_calls": []})
        return merge_assistant(msgs) if msgs else None
    if value.get("object") == "response" and isinstance(value.get("output"), list):  # OpenAI Responses
        msgs: list[dict[str, Any]] = []
        for item in value["output"]:
            if not isinstance(item, dict):
                continue
            if item.get("type") == "message":
                msgs.append({"role": "assistant", "content": _content_text(item.get("content")), "tool_calls": []})
            elif item.get("type") == "function_call":
                c = _canonical_call(item)
                if c:
                    msgs.append({"role": "assistant", "content": None, "tool_calls": [c]})
        return merge_assistant(msgs)
    if isinstance(value.get("choices"), list) and value["choices"]:  # OpenAI Chat Completion
        ch = value["choices"][0]
        m = canonical_message(ch.get("message")) if isinstance(ch, dict) else None
        return m
    if isinstance(value.get("messages"), list):  # a node's {"messages": [...]} state
        return None
    m = canonical_message(value)
    if m is not None and m["role"] == "assistant":
        return m
    return None


def user_request(value: Any) -> Any:
    """The user's own request inside a framework's root-input envelope (None when not one)."""
    value = loads(value)
    if isinstance(value, dict):
        if isinstance(value.get("task"), str):  # smolagents
            return value["task"]
        msgs = value.get("messages")
        if isinstance(msgs, list):  # LangGraph / LangChain state
            flat = [x for m in msgs for x in (m if isinstance(m, list) else [m])]
            users = [canonical_message(m) for m in flat]
            texts = [u["content"] for u in users if u and u["role"] == "user" and u.get("content")]
            if texts:
                return texts[0]
        if isinstance(value.get("input"), str) and len(value) <= 3:
            return value["input"]
    if isinstance(value, list):  # a message list (Agents SDK input items)
        users = [canonical_message(m) for m in value]
        texts = [u["content"] for u in users if u and u["role"] == "user" and u.get("content")]
        if texts:
            return texts[0]
    return None


def _tool_message(value: Any) -> dict[str, Any] | None:
    """A LangChain ToolMessage (serialised, `{"type": "tool", "data": {...}}` or flat)."""
    if not isinstance(value, dict):
        return None
    if value.get("lc") == 1 and (value.get("id") or [""])[-1] == "ToolMessage":
        return value.get("kwargs") if isinstance(value.get("kwargs"), dict) else None
    if value.get("type") == "tool" and isinstance(value.get("data"), dict):
        return value["data"]
    if value.get("type") == "tool" and "content" in value and "tool_call_id" in value:
        return value
    return None


def _looks_like_schema(value: Any) -> bool:
    return isinstance(value, dict) and value.get("type") == "object" and isinstance(value.get("properties"), dict)


# --- the trajectory pass ----------------------------------------------------------------------

PLUMBING_NAMES = re.compile(
    r"^(?:LangGraph|RunnableSequence|RunnableParallel.*|RunnableLambda|RunnableAssign|RunnablePassthrough"
    r"|ChatPromptTemplate|PromptTemplate|.*Prompt|should_continue|tools_condition|route.*|__start__"
    r"|Agent workflow|turn|Step \d+|running \d+ tools?|running tools|agent run|invoke_agent.*"
    r"|.*\.run|CodeAgent\.run|ToolCallingAgent\.run)$"
)


def _is_plumbing(step: Any, has_children: bool) -> bool:
    if step.kind in ("tool", "model"):
        return False
    md = step.metadata if isinstance(step.metadata, dict) else {}
    if "langgraph_node" in md or md.get("ls_integration") == "langgraph":
        return True
    if PLUMBING_NAMES.match(step.name or ""):
        return True
    if step.kind == "agent" and (has_children or md.get("agent.name")):
        return True
    return False


def order_by_tree(steps: list[Any], fallback: Any) -> list[Any]:
    """Sort by start time; a tie (stores keep milliseconds) goes to the span tree: parents before
    children, then depth-first with siblings by (start, end)."""
    by_id = {s.id: s for s in steps}
    children: dict[str | None, list[Any]] = {}
    for s in steps:
        parent = s.parent_id if s.parent_id in by_id else None
        children.setdefault(parent, []).append(s)

    def key(s: Any) -> tuple:
        return (s.start or s.end or fallback, s.end or s.start or fallback, s.id)

    pre: dict[str, int] = {}
    stack = sorted(children.get(None, []), key=key, reverse=True)
    seen: set[str] = set()
    while stack:
        s = stack.pop()
        if s.id in seen:
            continue
        seen.add(s.id)
        pre[s.id] = len(pre)
        stack.extend(sorted(children.get(s.id, []), key=key, reverse=True))
    for s in steps:  # a cycle in parent ids: whatever is left, in time order
        pre.setdefault(s.id, len(pre))
    return sorted(steps, key=lambda s: (s.start or s.end or fallback, pre[s.id]))


def normalise(traj: Any, root: dict[str, Any] | None) -> None:
    """In place, on a Trajectory just built by agentfire.trajectory.from_observations."""
    steps = traj.steps
    ids_with_children = {s.parent_id for s in steps if s.parent_id}
    calls_by_id: dict[str, dict[str, Any]] = {}
    first_user: Any = None
    for s in steps:
        if s.kind == "model":
            _normalise_model(s)
            out = s.output if isinstance(s.output, dict) else {}
            for c in out.get("tool_calls") or []:
                if isinstance(c, dict) and c.get("id"):
                    calls_by_id[str(c["id"])] = c
            if first_user is None:
                first_user = user_request(s.input)
        s.plumbing = _is_plumbing(s, s.id in ids_with_children)
    models = _ModelTurns(steps)  # built once: matching each tool to a turn stays linear
    for s in steps:
        if s.kind == "tool":
            _normalise_tool(s, calls_by_id, models)
    _errors_once(steps)
    for s in steps:  # an error of its own is never folded away
        if s.plumbing and s.level == "ERROR":
            s.plumbing = False
    # the user's request
    if root is not None:
        req = user_request(traj.root_input)
        if req is not None:
            traj.root_input = req
        elif traj.root_input is None and first_user is not None:
            traj.root_input = first_user
        if traj.root_output is not None:
            canon = canonical_output(traj.root_output) if not isinstance(traj.root_output, str) else None
            if canon and canon.get("content"):
                traj.root_output = canon["content"]
        # an agent that raised under a root that ended OK
        if traj.status == "finished":
            failed = [s for s in steps if s.kind == "agent" and s.level == "ERROR"]
            if failed:
                traj.status = "error"
                traj.problems.append(f"step {failed[0].index} ({failed[0].name}) failed: the trajectory is an "
                                     "error although its root span ended OK")


def normalise_step(s: Any) -> None:
    """What can be done for one step seen alone (a blast scan's candidate row)."""
    if s.kind == "model":
        _normalise_model(s)
    elif s.kind == "tool":
        _normalise_tool(s, {}, _ModelTurns([]))


def _errors_once(steps: list[Any]) -> None:
    """A wrapper (plumbing) that failed because a step under it failed carries the same error
    (smolagents' `Step N` re-raises its tool's): the error is shown once, on the step that failed;
    the wrapper keeps it in metadata (`error_of_step`, `wrapped_error`)."""
    by_id = {s.id: s for s in steps}
    failed = [s for s in steps if s.level == "ERROR" and not s.plumbing]
    for f in failed:
        seen: set[str] = set()
        p = by_id.get(f.parent_id) if f.parent_id else None
        while p is not None and p.id not in seen:
            seen.add(p.id)
            if p.plumbing and p.level == "ERROR" and p.kind != "agent":
                p.metadata = dict(p.metadata or {}, error_of_step=f.index, wrapped_error=p.status_message)
                p.level = "DEFAULT"
            p = by_id.get(p.parent_id) if p.parent_id else None


def _normalise_model(s: Any) -> None:
    out = s.output
    if isinstance(out, dict) and set(out) >= {"role", "content", "tool_calls"} and all(
            isinstance(c, dict) and set(c) >= {"id", "name", "arguments"} for c in out["tool_calls"] or []):
        return
    canon = canonical_output(out)
    if canon is not None:
        s.output = canon
    elif out is None:
        s.output = None


def _normalise_tool(s: Any, calls_by_id: dict[str, dict[str, Any]], steps: "_ModelTurns") -> None:
    md = s.metadata if isinstance(s.metadata, dict) else {}
    call_id = md.get("tool_call_id")
    # output: a LangChain ToolMessage envelope
    tm = _tool_message(s.output)
    if tm is None and isinstance(s.output, dict) and isinstance(s.output.get("messages"), list) and len(s.output["messages"]) == 1:
        tm = _tool_message(s.output["messages"][0])
    if tm is not None:
        call_id = call_id or tm.get("tool_call_id")
        content = tm.get("content")
        s.output = loads(content) if isinstance(content, str) else content
        if tm.get("status") == "error" and s.level not in ("ERROR",):
            s.level = "ERROR"
            s.status_message = s.status_message or (_content_text(content) or "tool error")[:300]
    elif isinstance(s.output, str):
        s.output = loads(s.output)
    if call_id:
        s.tool_call_id = str(call_id)
    # arguments
    inp = s.input
    if isinstance(inp, dict) and "kwargs" in inp and "args" in inp and set(inp) <= {"args", "kwargs", "sanitize_inputs_outputs"}:
        args, kwargs = inp.get("args") or [], inp.get("kwargs") or {}
        inp = dict(kwargs) if isinstance(kwargs, dict) else {}
        if args:
            inp["args"] = args
    call = calls_by_id.get(str(call_id)) if call_id else None
    by_id = call is not None
    if call is None:  # no id recorded (a tool that raised has no ToolMessage): by name and order
        cand = _calling(s, steps)
        if cand is not None and (not isinstance(inp, dict) or cand.get("arguments") == inp):
            call = cand
    if call is not None and not isinstance(inp, dict):
        cargs = call.get("arguments")
        if isinstance(cargs, dict) and inp is None and by_id:
            # the tool span left them out, the model turn that made this very call has them
            inp = dict(cargs)
            s.not_recorded = [x for x in s.not_recorded if x != "arguments"]
            s.metadata = dict(s.metadata or {}, arguments_from="model turn")
        elif isinstance(cargs, dict) and len(cargs) == 1 and _same(inp, next(iter(cargs.values()))):
            inp = dict(cargs)
    if call is not None and not s.tool_call_id and call.get("id"):
        s.tool_call_id = str(call["id"])
    if _looks_like_schema(inp):  # a tool's JSON schema is never its arguments
        inp = None
        if "arguments" not in s.not_recorded:
            s.not_recorded.append("arguments")
    s.input = inp


def _same(recorded: Any, value: Any) -> bool:
    return recorded == value or (isinstance(recorded, (str, int, float)) and str(recorded) == str(value))


class _ModelTurns:
    """The model steps with a start time, in time order, with their starts (for bisect)."""

    LOOK_BACK = 64  # model turns searched back from a tool for its call

    def __init__(self, steps: list[Any]):
        self.models = sorted((m for m in steps if m.kind == "model" and m.start), key=lambda m: m.start)
        self.starts = [m.start for m in self.models]


def _calling(s: Any, steps: _ModelTurns) -> dict[str, Any] | None:
    """The tool call of this tool's name in the closest model step before it (no id recorded).
    A bisect and a bounded look back, not a scan of every earlier step per tool (quadratic: a
    50,000-step trajectory took minutes)."""
    import bisect

    if not s.start or not steps.models:
        return None
    end = bisect.bisect_right(steps.starts, s.start)
    for m in reversed(steps.models[max(0, end - _ModelTurns.LOOK_BACK):end]):
        out = m.output if isinstance(m.output, dict) else {}
        for c in out.get("tool_calls") or []:
            if c.get("name") == s.name:
                return c
    return None
