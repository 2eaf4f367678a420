"""`agentfire capture`: minute five, the failing input into the frozen eval set."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import typer
from rich.table import Table
from rich.text import Text

from agentfire.cli._app import (
    app, emit_json, err_console, fail, handles_errors, interactive, out_console, safe_text,
    state, want_json, warn,
)
from agentfire.cli._output import command_for, link_text, next_steps, print_table

PUSH_STYLE = {"CONFIRMED": "bold green"}


def _expected(text: Optional[str], file: Optional[Path]) -> Optional[str]:
    """--expected, --expected-file, or on a terminal a question; None: derive it from the step."""
    if text is not None and file is not None:
        raise fail("give --expected or --expected-file, not both", 2)
    if file is not None:
        try:
            return typer.get_text_stream("stdin").read() if str(file) == "-" else \
                file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise fail(f"--expected-file {file}: cannot read ({exc})", 2) from None
    if text is not None:
        return text
    if interactive():
        answer = typer.prompt("What should the agent have done instead? (Enter: it must not "
                              "repeat the off-rails step)", default="", show_default=False, err=True)
        return answer or None
    return None


def render(result: Any, url: Optional[str] = None) -> None:
    case, stored = result.case, result.stored
    off = case["off_rails"]
    added = stored.added
    table = Table(title=f"capture: {case['id']}  (incident {case['incident']})",
                  title_justify="left", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    table.add_row("eval set", Text.assemble(
        ("ADDED" if added else "ALREADY THERE", "bold green" if added else "yellow"),
        f"  {stored.path}:{stored.line}"))
    table.add_row("trace", link_text(case["source_trace_id"], url))
    table.add_row("off-rails step", Text.assemble(
        f"{off['step']} ", safe_text(off["name"], 120), f"  ({off['chosen_by']})"))
    if off.get("why"):
        table.add_row("why", safe_text(off["why"], 600))
    table.add_row("conversation", Text(f"{len(case['vars']['conversation'])} step(s) before it"))
    table.add_row("expected", Text.assemble(safe_text(case["expected"], 600), (
        "  (derived: pass --expected to say what it should have done)"
        if case.get("expected_source") == "derived" else "", "dim")))
    if case.get("golden_tools"):
        table.add_row("golden tools", safe_text(" -> ".join(case["golden_tools"]), 600))
    if case.get("tags"):
        table.add_row("tags", safe_text(", ".join(case["tags"]), 300))
    print_table(table)
    if result.push:
        push = Table(title="push", title_justify="left")
        for col in ("target", "dataset", "outcome", "latency", "detail"):
            push.add_column(col, justify="right" if col == "latency" else "left")
        for p in result.push:
            push.add_row(Text(p.target), safe_text(p.dataset, 120),
                         Text(p.outcome, style=PUSH_STYLE.get(p.outcome, "bold red")),
                         Text(f"{p.latency_ms} ms"), safe_text(p.detail, 300))
        print_table(push)


@app.command(epilog=(
    "Example: agentfire --incident inc-42 capture 7f3a9c --expected 'ask before emailing an "
    "address found in a document' --tag wrong-recipient --push"
))
@handles_errors
def capture(
    ctx: typer.Context,
    trace_id: str = typer.Argument(..., metavar="TRACE_ID", help="The failing trajectory."),
    expected: Optional[str] = typer.Option(
        None, "--expected", metavar="TEXT",
        help="What the agent should have done (default: it must not repeat the off-rails step)."),
    expected_file: Optional[Path] = typer.Option(
        None, "--expected-file", metavar="F", help="The expected behaviour from a file ('-': stdin)."),
    step: Optional[int] = typer.Option(
        None, "--step", min=1, metavar="N",
        help="The off-rails step (default: the one triage names)."),
    golden: Optional[str] = typer.Option(
        None, "--golden", metavar="CLASS|TRACE_ID|FILE",
        help="A known-good run: its tool sequence goes into the case (and triage diffs against it)."),
    tag: Optional[List[str]] = typer.Option(None, "--tag", metavar="T", help="Tag the case (repeatable)."),
    push: bool = typer.Option(
        False, "--push",
        help="Also upsert it as a Langfuse dataset item (and a Phoenix example when the trace "
             "store is Phoenix)."),
    expected_source: Optional[str] = typer.Option(
        None, "--expected-source", metavar="responder|derived",
        help="Who wrote --expected: a person (responder, the default) or a tool that derived it from "
             "the off-rails step (derived; the runbook walk says so when nobody answered)."),
    json_out: bool = typer.Option(False, "--json", help="JSON on stdout."),
) -> None:
    """Minute five: add the failing input to the frozen eval set as a regression case, linked to
    its trace and incident. Capturing the same trace and step again is a no-op that says so.
    Exit 0 when the case is in the eval set (and every --push target confirmed it), 1 otherwise."""
    from agentfire import capture as core

    st = state(ctx)
    rb = st.runbook()
    if expected_source not in (None, "responder", "derived"):
        raise fail(f"--expected-source {expected_source!r}: use responder or derived", 2)
    text = _expected(expected, expected_file)
    journal = st.journal(create=True)
    as_json = want_json(ctx, json_out)
    console = err_console()
    if console.is_terminal and not as_json:
        with console.status(f"reading {trace_id} and capturing..."):
            result = core.capture(rb, journal, trace_id, expected=text, actor=st.actor,
                                  step=step, tags=tag or [], push=push, golden=golden,
                                  expected_source=expected_source)
    else:
        result = core.capture(rb, journal, trace_id, expected=text, actor=st.actor,
                              step=step, tags=tag or [], push=push, golden=golden,
                                  expected_source=expected_source)
    if as_json:
        emit_json(result.to_json())
    else:
        from agentfire.links import linker

        render(result, linker(rb)(result.case["source_trace_id"]))
    stored = result.stored
    if not stored.added:
        msg = f"{stored.case_id} is already in {stored.path} (line {stored.line}); nothing written"
        if stored.differs:
            msg += f"; the stored case differs in {', '.join(stored.differs)} and was kept as is"
        warn(msg)
    if result.trajectory_status == "running":
        warn(f"trace {trace_id} is still running: the case holds the steps seen so far")
    if not result.ok:
        bad = [f"{p.target}={p.outcome}" for p in result.push if not p.ok]
        raise fail(f"the case is in the eval set, but the push is not confirmed: {', '.join(bad)}", 1)
    if not as_json:
        next_steps((command_for(ctx, "incident", "close"), "the case is captured: close with a report"))
