"""A smolagents ToolCallingAgent with a scripted Model (no network), traced by
openinference-instrumentation-smolagents (OTLP to Phoenix). smolagents ends a run with its
`final_answer` tool: the script's last text turn becomes a final_answer call.
Prints one JSON line per run: {"run", "user", "trace_ids"}."""

from __future__ import annotations

import json
from typing import Any

from _otel import provider, report, selected_runs
from scenario import COMPLETION_TOKENS, MODEL_NAME, PROMPT_TOKENS, TOOLS, Script
from smolagents import ToolCallingAgent, tool
from smolagents.models import OpenAIModel


class _ScriptedCompletions:
    """The `client.chat.completions` of an OpenAI client, answering from the run's script."""

    def __init__(self) -> None:
        self.script: Script | None = None

    def create(self, **kwargs: Any) -> Any:
        from openai.types.chat import ChatCompletion

        assert self.script is not None
        turn = self.script.next_turn()
        calls = [{"id": self.script.call_id(), "type": "function",
                  "function": {"name": c.name, "arguments": json.dumps(c.args)}} for c in turn.calls]
        content = turn.text
        if not calls:  # a closing answer: smolagents wants it as the final_answer tool call
            calls = [{"id": self.script.call_id(), "type": "function",
                      "function": {"name": "final_answer", "arguments": json.dumps({"answer": turn.text})}}]
        return ChatCompletion.model_validate({
            "id": f"chatcmpl-{self.script.run.key[:10]}-{self.script.i}", "object": "chat.completion",
            "created": 0, "model": MODEL_NAME,
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": content, "tool_calls": calls}}],
            "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS,
                      "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS}})


class _Client:
    def __init__(self) -> None:
        self.completions = _ScriptedCompletions()
        self.chat = self


class ScriptedModel(OpenAIModel):
    """smolagents' own OpenAIModel (which the instrumentor wraps) over a scripted client."""

    def create_client(self) -> Any:
        return _Client()


def _tools() -> list[Any]:
    out = []
    for f in TOOLS:
        # smolagents' @tool wants the arguments documented in the docstring
        params = [p for p in f.__code__.co_varnames[: f.__code__.co_argcount]]
        f.__doc__ = (f.__doc__ or "") + "\n\nArgs:\n" + "".join(f"    {p}: the {p}.\n" for p in params)
        out.append(tool(f))
    return out


def main() -> None:
    from openinference.instrumentation import using_attributes
    from openinference.instrumentation.smolagents import SmolagentsInstrumentor

    tp, rec = provider()
    SmolagentsInstrumentor().instrument(tracer_provider=tp)
    model = ScriptedModel(model_id=MODEL_NAME, api_key="not-used")
    agent = ToolCallingAgent(tools=_tools(), model=model, max_steps=8, name="support_agent",
                             verbosity_level=-1)
    for run in selected_runs():
        model.client.completions.script = Script(run)
        before = len(rec.roots)
        with using_attributes(user_id=run.user, session_id=f"s-{run.key}"):
            agent.run(run.request, reset=True)
        report(run.key, run.user, rec.roots[before:])
    tp.shutdown()


if __name__ == "__main__":
    main()
