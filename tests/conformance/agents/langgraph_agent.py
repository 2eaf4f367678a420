"""A LangGraph tool-calling agent (prompt | chat model, ToolNode, should_continue) with a scripted
chat model, traced either by openinference-instrumentation-langchain (OTLP to Phoenix) or by the
Langfuse SDK's LangChain CallbackHandler (OTLP to Langfuse): argv[1] is `openinference` or `langfuse`.
Prints one JSON line per run: {"run", "user", "trace_ids"}."""

from __future__ import annotations

import sys
from typing import Any

from _otel import fail, provider, report, selected_runs
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode
from scenario import COMPLETION_TOKENS, MODEL_NAME, PROMPT_TOKENS, TOOLS, Script


class ScriptedChatModel(BaseChatModel):
    """A chat model that answers from the run's script (no network)."""

    script: Any = None

    @property
    def _llm_type(self) -> str:
        return "scripted"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": MODEL_NAME}

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
        turn = self.script.next_turn()
        calls = [{"name": c.name, "args": dict(c.args), "id": self.script.call_id(), "type": "tool_call"}
                 for c in turn.calls]
        usage = {"input_tokens": PROMPT_TOKENS, "output_tokens": COMPLETION_TOKENS,
                 "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS}
        msg = AIMessage(content=turn.text or "", tool_calls=calls, usage_metadata=usage,
                        response_metadata={"model_name": MODEL_NAME})
        return ChatResult(generations=[ChatGeneration(message=msg)],
                          llm_output={"model_name": MODEL_NAME, "token_usage": {
                              "prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS,
                              "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS}})


def build_graph(model: ScriptedChatModel) -> Any:
    tools = [tool(f) for f in TOOLS]
    prompt = ChatPromptTemplate.from_messages([
        ("system", "You are the support agent of Acme. Use the tools."),
        MessagesPlaceholder("messages"),
    ])
    chain = prompt | model.bind_tools(tools)

    def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [chain.invoke({"messages": state["messages"]})]}

    def should_continue(state: MessagesState) -> str:
        return "tools" if state["messages"][-1].tool_calls else END

    g = StateGraph(MessagesState)
    g.add_node("agent", agent)
    g.add_node("tools", ToolNode(tools, handle_tool_errors=True))
    g.add_edge(START, "agent")
    g.add_conditional_edges("agent", should_continue, ["tools", END])
    g.add_edge("tools", "agent")
    return g.compile()


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "openinference"
    model = ScriptedChatModel()
    graph = build_graph(model)
    if mode == "openinference":
        from openinference.instrumentation import using_attributes
        from openinference.instrumentation.langchain import LangChainInstrumentor

        tp, rec = provider()
        LangChainInstrumentor().instrument(tracer_provider=tp)
        for run in selected_runs():
            model.script = Script(run)
            before = len(rec.roots)
            with using_attributes(user_id=run.user, session_id=f"s-{run.key}"):
                graph.invoke({"messages": [HumanMessage(run.request)]})
            report(run.key, run.user, rec.roots[before:])
        tp.shutdown()
    elif mode == "langfuse":
        from langfuse import get_client, propagate_attributes
        from langfuse.langchain import CallbackHandler

        client = get_client()
        for run in selected_runs():
            model.script = Script(run)
            handler = CallbackHandler()
            with propagate_attributes(user_id=run.user, session_id=f"s-{run.key}"):
                graph.invoke({"messages": [HumanMessage(run.request)]}, config={"callbacks": [handler]})
            report(run.key, run.user, [handler.last_trace_id] if handler.last_trace_id else [])
        client.flush()
        client.shutdown()
    else:
        fail(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
