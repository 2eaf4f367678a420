"""One pass over a trajectory that every detector shares: what each step is, computed once.

Per step: is it a model turn (a GENERATION, or an agent's message in a multi-agent or
message-only trace), its text and the tool calls it emitted; for a tool call, its parsed arguments,
its class (read / mutation / handoff / pure / other), the error its output reports, and the model
turn that decided it (matched by tool-call id, else by name, else the latest model turn). Detectors
read these lists instead of re-parsing and re-classifying every later step from every earlier one,
so triage stays linear in the number of steps.
"""

from __future__ import annotations

import re
from typing import Any

from agentfire.config import TriageSection
from agentfire.trajectory import Step, Trajectory
from agentfire.triage._text import (
    _text_of, call_class, flat, model_text, output_error, sql_of, tool_args, tool_calls_of,
)

USER_NAMES = ("user", "human", "customer")
EXECUTION_REPORT = re.compile(r"\s*(?:exit ?code:? ?-?\d+|traceback \(most recent call last\))", re.I)
ERROR_REPORT = re.compile(r"\s*(?:exit ?code:? ?-?[1-9]\d*|traceback \(most recent call last\))", re.I)


def _message(value: Any) -> dict[str, Any] | None:
    if isinstance(value, dict) and isinstance(value.get("role"), str):
        return value
    return None


def is_model_turn(s: Step) -> bool:
    """A GENERATION, or a non-tool step whose output is an assistant message (an agent speaking in
    a multi-agent or message-only trace)."""
    if s.kind == "model":
        return True
    if s.kind == "tool" or getattr(s, "plumbing", False):
        return False  # a framework's graph node or chain echoing the model's message is not a turn
    msg = _message(s.output)
    return msg is not None and msg.get("role") == "assistant"


def user_text(s: Step) -> str | None:
    """The text of a user's turn, when the step is one (an EVENT/span named for the user, or a
    message with role user)."""
    if s.kind in ("tool", "model"):
        return None
    for value in (s.input, s.output):
        msg = _message(value)
        if msg is not None:
            return _text_of(msg) if msg.get("role") == "user" else None
    name = s.name.lower()
    if any(n in name for n in USER_NAMES) and not name.startswith("system"):
        text = _text_of(s.input) or _text_of(s.output)
        return text or None
    return None


def turn_name(s: Step) -> str:
    """Who spoke: the agent's name for an agent's message, else the step's name."""
    msg = _message(s.output)
    if msg is not None and isinstance(msg.get("name"), str) and msg["name"]:
        return msg["name"]
    return s.name


class Index:
    """Per-step facts for one trajectory (positions are 0-based into traj.steps)."""

    def __init__(self, traj: Trajectory, cfg: TriageSection):
        self.traj = traj
        self.cfg = cfg
        steps = self.steps = traj.steps
        n = len(steps)
        self.pos: dict[int, int] = {s.index: p for p, s in enumerate(steps)}
        self.model = [is_model_turn(s) for s in steps]
        self.tool = [s.is_tool for s in steps]
        self.text: list[str] = ["" for _ in range(n)]
        self.calls: list[list[dict[str, Any]]] = [[] for _ in range(n)]
        self.args: list[dict[str, Any] | None] = [None] * n
        self.sql: list[str | None] = [None] * n
        self.cls: list[str | None] = [None] * n
        self.error: list[str | None] = [None] * n
        self.user: list[str | None] = [None] * n
        # a message that is an execution's result (a code runner speaking as an agent in a
        # message-only trace: "exitcode: 1 (execution failed)", a traceback): a tool call's output
        self.report: list[bool] = [False] * n
        self.user_spoke: list[bool] = [False] * n  # a model turn answering a new user message
        self.decider: list[int | None] = [None] * n  # tool position -> deciding model turn position
        self.executed: list[list[int]] = [[] for _ in range(n)]  # model position -> its tool positions
        by_call_id: dict[str, int] = {}
        pending: list[tuple[int, str, bool]] = []  # (model position, tool name, consumed) of the latest turn
        last_model: int | None = None
        prompt_len = 0
        for p, s in enumerate(steps):
            if self.model[p]:
                text = self.text[p] = model_text(s)
                inp = s.input
                if isinstance(inp, list):
                    # the prompt grew and ends with a user's message: the user spoke since the
                    # last turn (traces that keep users' turns only inside the model's input)
                    if len(inp) > prompt_len and isinstance(inp[-1], dict) and inp[-1].get("role") == "user":
                        self.user_spoke[p] = True
                    prompt_len = len(inp)
                if text and EXECUTION_REPORT.match(text, 0, 400):
                    self.report[p] = True
                    self.error[p] = output_error(text) if ERROR_REPORT.match(text, 0, 400) else None
                calls = tool_calls_of(s.output)
                self.calls[p] = calls
                pending = []
                for c in calls:
                    if isinstance(c.get("id"), str) and c["id"]:
                        by_call_id[c["id"]] = p
                    pending.append([p, c["name"], False])  # type: ignore[list-item]
                last_model = p
            elif s.is_tool:
                args = tool_args(s)
                self.args[p] = args
                sql = self.sql[p] = sql_of(s, args)
                self.cls[p] = call_class(s, cfg, args, sql)
                self.error[p] = self._error(s)
                d: int | None = None
                cid = getattr(s, "tool_call_id", None) or (s.metadata or {}).get("tool_call_id")
                if isinstance(cid, str) and cid in by_call_id:
                    d = by_call_id[cid]
                else:
                    for item in pending:
                        if not item[2] and item[1] == s.name:
                            item[2] = True
                            d = item[0]
                            break
                    else:
                        d = last_model
                self.decider[p] = d
                if d is not None:
                    self.executed[d].append(p)
            else:
                self.user[p] = user_text(s)
        self.model_positions = [p for p in range(n) if self.model[p]]
        self._facts: Any = None
        self._flat_out: dict[int, str] = {}
        self._flat_args: dict[int, str] = {}

    def out_text(self, p: int) -> str:
        """A step's output as one string (agentfire.triage._text.flat), made once."""
        hit = self._flat_out.get(p)
        if hit is None:
            hit = self._flat_out[p] = flat(self.steps[p].output)
        return hit

    def args_text(self, p: int) -> str:
        """A tool step's arguments as one string, made once."""
        hit = self._flat_args.get(p)
        if hit is None:
            hit = self._flat_args[p] = flat(self.args[p] or {})
        return hit

    def facts(self) -> Any:
        """agentfire.triage.grounding.Facts for this trajectory, built once on first use."""
        if self._facts is None:
            from agentfire.triage.grounding import Facts

            self._facts = Facts(self)
        return self._facts

    @staticmethod
    def _error(s: Step) -> str | None:
        if s.level == "ERROR" or s.level == "WARNING":
            return s.status_message or f"level {s.level}"
        return output_error(s.output)

    # --- lookups -----------------------------------------------------------------------------

    def step(self, p: int) -> Step:
        return self.steps[p]

    def decision_of(self, p: int) -> int:
        """The position of the model turn that decided tool call `p` (the call itself when no
        model turn is visible before it)."""
        d = self.decider[p] if self.tool[p] else None
        return p if d is None else d

    def at(self, p: int) -> tuple[int, int | None]:
        """(step index, call step index) naming tool position `p` by its decision and its call."""
        if self.tool[p]:
            return self.steps[self.decision_of(p)].index, self.steps[p].index
        return self.steps[p].index, None

    def call_of_turn(self, p: int) -> int | None:
        """The first tool call a model turn's decision executed (None when it only spoke)."""
        ex = self.executed[p]
        return ex[0] if ex else None

    def last_model_turn(self) -> int | None:
        return self.model_positions[-1] if self.model_positions else None
