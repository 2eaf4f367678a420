"""An OpenAI Agents SDK agent with a scripted Model (no network), traced by
openinference-instrumentation-openai-agents (OTLP to Phoenix). argv[1]: `sensitive` (the default
trace_include_sensitive_data=True) or `redacted` (trace_include_sensitive_data=False: the SDK
leaves tool arguments, outputs and model messages out of the trace).
Prints one JSON line per run: {"run", "user", "trace_ids"}."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from _otel import provider, report, selected_runs
from agents import (Agent, ModelResponse, RunConfig, Runner, Usage, function_tool,
                    set_trace_processors)
from agents.models.interface import Model
from agents.tracing import response_span
from agents.usage import model_usage_to_span_usage
from openai.types.responses import (Response, ResponseFunctionToolCall, ResponseOutputMessage,
                                    ResponseOutputText, ResponseUsage)
from scenario import AGENT_RAISED, COMPLETION_TOKENS, MODEL_NAME, PROMPT_TOKENS, TOOLS, Script, close_account


class ScriptedModel(Model):
    def __init__(self) -> None:
        self.script: Script | None = None

    async def get_response(self, system_instructions: Any, input: Any, model_settings: Any, tools: Any,
                           output_schema: Any, handoffs: Any, tracing: Any, **kwargs: Any) -> ModelResponse:
        assert self.script is not None
        turn = self.script.next_turn()
        n = self.script.i
        out: list[Any] = []
        if turn.text:
            out.append(ResponseOutputMessage(
                id=f"msg_{self.script.run.key[:10]}_{n}", type="message", role="assistant", status="completed",
                content=[ResponseOutputText(type="output_text", text=turn.text, annotations=[])]))
        for c in turn.calls:
            cid = self.script.call_id()
            out.append(ResponseFunctionToolCall(id=f"fc_{cid}", call_id=cid, type="function_call", name=c.name,
                                                arguments=json.dumps(c.args), status="completed"))
        usage = Usage(requests=1, input_tokens=PROMPT_TOKENS, output_tokens=COMPLETION_TOKENS,
                      total_tokens=PROMPT_TOKENS + COMPLETION_TOKENS)
        response = Response(
            id=f"resp_{self.script.run.key[:10]}_{n}", created_at=0, model=MODEL_NAME, object="response",
            output=out, parallel_tool_calls=True, tool_choice="auto", tools=[],
            usage=ResponseUsage(input_tokens=PROMPT_TOKENS, output_tokens=COMPLETION_TOKENS,
                                total_tokens=PROMPT_TOKENS + COMPLETION_TOKENS,
                                input_tokens_details={"cached_tokens": 0, "cache_write_tokens": 0},
                                output_tokens_details={"reasoning_tokens": 0}))
        # what the SDK's own OpenAIResponsesModel records: a response span with the Response
        # object and the input, only when sensitive data may be traced
        with response_span(disabled=tracing.is_disabled()) as span:
            span.span_data.usage = model_usage_to_span_usage(usage)
            if tracing.include_data():
                span.span_data.response = response
                span.span_data.input = input
        return ModelResponse(output=out, usage=usage, response_id=response.id)

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


async def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "sensitive"
    from openinference.instrumentation import using_attributes
    from openinference.instrumentation.openai_agents import OpenAIAgentsInstrumentor

    set_trace_processors([])  # no export to OpenAI's own trace backend
    tp, rec = provider()
    OpenAIAgentsInstrumentor().instrument(tracer_provider=tp)
    model = ScriptedModel()
    agent = Agent(name="support-agent", instructions="You are the support agent of Acme. Use the tools.",
                  model=model, tools=[function_tool(f) for f in TOOLS])
    config = RunConfig(trace_include_sensitive_data=(mode == "sensitive"), workflow_name="Agent workflow")
    for run in selected_runs():
        model.script = Script(run)
        before = len(rec.roots)
        with using_attributes(user_id=run.user, session_id=f"s-{run.key}"):
            await Runner.run(agent, run.request, run_config=config)
        report(run.key, run.user, rec.roots[before:])
    # a tool whose error is not caught (failure_error_function=None): the run raises
    raising = Agent(name="support-agent", instructions="You are the support agent of Acme.", model=model,
                    tools=[function_tool(close_account, failure_error_function=None)])
    model.script = Script(AGENT_RAISED)
    before = len(rec.roots)
    with using_attributes(user_id=AGENT_RAISED.user, session_id=f"s-{AGENT_RAISED.key}"):
        try:
            await Runner.run(raising, AGENT_RAISED.request, run_config=config)
        except Exception as exc:  # noqa: BLE001
            raised = type(exc).__name__
        else:
            raised = None
    report(AGENT_RAISED.key, AGENT_RAISED.user, rec.roots[before:], raised=raised)
    tp.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
