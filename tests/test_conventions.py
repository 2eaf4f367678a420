"""Unit tests of agentfire.providers.traces._conventions on hand-written spans and rows in shapes
the real frameworks did not produce in tests/fixtures/frameworks/ (the older OTel GenAI message
events, OpenAI Chat Completions and Anthropic content blocks in output.value, LangChain's
serialised ToolMessage with an error status)."""

from __future__ import annotations

import json

from agentfire.providers.traces._conventions import canonical_output, span_to_row, user_request
from agentfire.trajectory import from_observations


def _span(span_id: str, name: str, attrs: dict, *, parent: str | None = "r" * 16, events: list | None = None,
          start: str = "2026-11-23T09:00:00.000001+00:00", status: str = "OK") -> dict:
    return {"name": name, "context": {"trace_id": "ab" * 16, "span_id": span_id}, "span_kind": None,
            "parent_id": parent, "start_time": start, "end_time": start, "status_code": status,
            "status_message": "", "attributes": attrs, "events": events or []}


def test_genai_message_events_give_the_model_turn_and_the_users_request() -> None:
    chat = _span("c" * 16, "chat gpt-4o", {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
                                           "gen_ai.usage.input_tokens": 50, "gen_ai.usage.output_tokens": 7},
                 events=[{"name": "gen_ai.user.message", "attributes": {"content": "Pay invoice 9"}},
                         {"name": "gen_ai.choice", "attributes": {"message": json.dumps({
                             "role": "assistant", "content": "Paying it.",
                             "tool_calls": [{"id": "t1", "type": "function",
                                             "function": {"name": "pay", "arguments": "{\"invoice\": 9}"}}]})}}])
    row = span_to_row(chat)
    assert row["type"] == "GENERATION" and row["model"] == "gpt-4o"
    assert row["usageDetails"] == {"input": 50, "output": 7}
    assert json.loads(row["output"]) == {"role": "assistant", "content": "Paying it.",
                                         "tool_calls": [{"id": "t1", "name": "pay", "arguments": {"invoice": 9}}]}
    tool = _span("d" * 16, "execute_tool pay", {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "pay",
                                                "gen_ai.tool.call.id": "t1"},
                 start="2026-11-23T09:00:00.000002+00:00", status="ERROR",
                 events=[{"name": "exception", "attributes": {"exception.type": "x.Declined",
                                                              "exception.message": "card declined"}}])
    root = _span("r" * 16, "invoke_agent", {"gen_ai.operation.name": "invoke_agent", "enduser.id": "u-9"},
                 parent=None)
    t = from_observations("ab" * 16, [span_to_row(s) for s in (root, chat, tool)])
    (step,) = t.tool_steps
    # no arguments recorded on the tool span: the calling turn's call (matched by id) has them
    assert (step.name, step.input, step.tool_call_id, step.level) == ("pay", {"invoice": 9}, "t1", "ERROR")
    assert step.status_message == "Declined: card declined"
    assert t.root_input == "Pay invoice 9" and t.user_id == "u-9"


def test_output_envelopes_become_the_canonical_turn() -> None:
    completion = {"object": "chat.completion", "choices": [{"message": {
        "role": "assistant", "content": None,
        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}}]}}]}
    assert canonical_output(completion) == {"role": "assistant", "content": None,
                                            "tool_calls": [{"id": "c1", "name": "f", "arguments": {"a": 1}}]}
    anthropic = {"role": "assistant", "content": [{"type": "text", "text": "Looking."},
                                                  {"type": "tool_use", "id": "u1", "name": "g", "input": {"b": 2}}]}
    assert canonical_output(anthropic) == {"role": "assistant", "content": "Looking.",
                                           "tool_calls": [{"id": "u1", "name": "g", "arguments": {"b": 2}}]}
    assert user_request({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}]}) == "hi"
    assert user_request({"unrelated": 1}) is None


def test_a_serialised_error_toolmessage_makes_the_tool_step_an_error() -> None:
    rows = [
        {"id": "root", "traceId": "t", "type": "CHAIN", "name": "LangGraph", "startTime": "2026-11-23T09:00:00Z",
         "endTime": "2026-11-23T09:00:01Z", "input": json.dumps({"messages": [["human", "x"]]})},
        {"id": "g", "traceId": "t", "type": "GENERATION", "name": "ChatOpenAI", "parentObservationId": "root",
         "startTime": "2026-11-23T09:00:00.100Z", "endTime": "2026-11-23T09:00:00.200Z",
         "output": json.dumps({"role": "assistant", "content": "",
                               "tool_calls": [{"name": "refund", "args": {"order": "7"}, "id": "k1"}]})},
        {"id": "tool", "traceId": "t", "type": "TOOL", "name": "refund", "parentObservationId": "root",
         "startTime": "2026-11-23T09:00:00.300Z", "endTime": "2026-11-23T09:00:00.400Z", "input": json.dumps("7"),
         "output": json.dumps({"lc": 1, "type": "constructor", "id": ["langchain", "schema", "messages", "ToolMessage"],
                               "kwargs": {"content": "{\"error\": \"declined\"}", "tool_call_id": "k1",
                                          "status": "error"}})},
    ]
    t = from_observations("t", rows)
    (step,) = t.tool_steps
    assert step.input == {"order": "7"} and step.output == {"error": "declined"}
    assert step.level == "ERROR" and step.tool_call_id == "k1"
