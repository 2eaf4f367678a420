"""A pydantic-ai agent with a scripted FunctionModel (no network), traced by pydantic-ai's own
OpenTelemetry GenAI instrumentation (InstrumentationSettings, OTLP to Phoenix). pydantic-ai has
no user-id convention: the run's `metadata` carries it (recorded on the agent run span).
Prints one JSON line per run: {"run", "user", "trace_ids"}."""

from __future__ import annotations

import sys
from typing import Any

from _otel import provider, report, selected_runs
from pydantic_ai import Agent
from pydantic_ai.messages import ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.models.instrumented import InstrumentationSettings
from pydantic_ai.usage import RequestUsage
from scenario import COMPLETION_TOKENS, MODEL_NAME, PROMPT_TOKENS, TOOLS, Script

STATE: dict[str, Script] = {}


def retrying(fn: Any) -> Any:
    """A tool that fails tells the model so with ModelRetry (pydantic-ai's way of returning a tool
    error to the model; any other exception ends the run)."""
    import functools

    from pydantic_ai import ModelRetry

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RuntimeError as exc:
            raise ModelRetry(str(exc)) from exc

    return wrapper


def scripted(messages: list[Any], info: AgentInfo) -> ModelResponse:
    script = STATE["script"]
    turn = script.next_turn()
    parts: list[Any] = []
    if turn.text:
        parts.append(TextPart(turn.text))
    for c in turn.calls:
        parts.append(ToolCallPart(tool_name=c.name, args=dict(c.args), tool_call_id=script.call_id()))
    return ModelResponse(parts=parts, model_name=MODEL_NAME,
                         usage=RequestUsage(input_tokens=PROMPT_TOKENS, output_tokens=COMPLETION_TOKENS))


def main() -> None:
    version = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    tp, rec = provider()
    agent = Agent(FunctionModel(scripted, model_name=MODEL_NAME), name="support-agent",
                  instructions="You are the support agent of Acme. Use the tools.", tools=[retrying(f) for f in TOOLS])
    agent.instrument = InstrumentationSettings(tracer_provider=tp, version=version)
    for run in selected_runs():
        STATE["script"] = Script(run)
        before = len(rec.roots)
        agent.run_sync(run.request, metadata={"user_id": run.user, "session_id": f"s-{run.key}"})
        report(run.key, run.user, rec.roots[before:])
    tp.shutdown()


if __name__ == "__main__":
    main()
