"""`agentfire triage TRACE_ID`: minute three, the walk backwards and the verdict."""

from __future__ import annotations

from typing import Any, Optional

import typer
from rich.table import Table
from rich.text import Text

from agentfire.cli._app import (
    app, emit_json, err_console, handles_errors, out_console, safe_text, state, want_json,
)
from agentfire.cli._output import command_for, link_text, next_steps, print_table, quote

SEVERITY_STYLE = {"high": "bold red", "medium": "yellow", "low": "dim"}
TRIM = 300  # characters of each value shown without --full


@app.command(
    epilog=(
        "Example: agentfire triage 3f9c2a...e1 --last 15 --golden invoice_forward\n\n"
        "The verdict rules: the earliest high-severity finding; else the first golden divergence; "
        "else the earliest medium finding; else 'no detector fired' and where to start reading: "
        "the first state-changing call, else the last model turn (README, 'triage'). The verdict names the deciding model turn and the tool call it made."
    ),
)
@handles_errors
def triage(
    ctx: typer.Context,
    trace_id: str = typer.Argument(..., help="The trajectory (trace id) to walk."),
    last: int = typer.Option(20, "--last", "-n", min=0, help="Show the last N steps (0: all)."),
    golden: Optional[str] = typer.Option(
        None, "--golden", "-g", metavar="CLASS|TRACE_ID|FILE",
        help="Diff against a known-good run: a class saved with `golden save`, a trace id, or a file.",
    ),
    mode: str = typer.Option(
        "mutations", "--mode",
        help="Golden diff: mutations (state-changing calls by name and arguments, any order, reads "
             "ignored), strict, unordered, subset, superset.",
    ),
    args_mode: Optional[str] = typer.Option(
        None, "--args",
        help="Argument matching: golden (the arguments the golden call sets; default for mutations), "
             "exact, ignore (default for the other modes), keys:A,B.",
    ),
    full: bool = typer.Option(False, "--full", help="Show values whole (default: trimmed)."),
    json_out: bool = typer.Option(False, "--json", help="JSON on stdout (shape: README, 'triage')."),
) -> None:
    """Minute three: walk one trajectory backwards from its end: each step's tool and arguments, output, the
    model's text, level, tokens, cost and time; then the detectors' findings, the golden diff and
    one sentence naming the off-rails step. Exit 1 when the trace is not in the store."""
    from agentfire import triage as core

    st = state(ctx)
    rb = st.runbook()
    as_json = want_json(ctx, json_out)
    journal = st.journal(create=False)  # a mistyped --incident fails before the trace is read
    console = err_console()
    if console.is_terminal and not as_json:
        with console.status(f"reading {trace_id} ..."):
            report = core.run(rb, trace_id, golden, mode=mode, args=args_mode)
    else:
        report = core.run(rb, trace_id, golden, mode=mode, args=args_mode)

    if journal is not None:
        journal.append("triage", actor=st.actor, trace_id=report.trajectory.trace_id, outcome="verdict",
                       verdict=report.verdict.to_json(), findings=len(report.findings),
                       golden=report.diff.golden if report.diff else None,
                       source=report.trajectory.source)
    if as_json:
        emit_json(report.to_json(full=full))
        return
    from agentfire.links import linker

    render(report, last=last, full=full, url=linker(rb)(report.trajectory.trace_id))
    # the follow-ups name the verdict's step (read generically: any verdict with a step_index)
    tid = quote(report.trajectory.trace_id)
    step = getattr(report.verdict, "step_index", None)
    if report.verdict.kind == "none":
        step = None  # "no detector fired" names where to start reading, not an off-rails step
    if step is not None:
        follow = [(command_for(ctx, "capture", tid, "--step", str(step)), "minute five: this input into the eval set")]
        if report.verdict.call_step_index is not None:  # blast --like needs a tool call to match
            follow.insert(0, (command_for(ctx, "blast", "--like", f"{tid}:{step}", "--since", "6h"),
                              "minute four: every trajectory that went off the rails the same way"))
        next_steps(*follow)
    else:
        next_steps((command_for(ctx, "triage", tid, "--golden", "CLASS"), "diff it against a known-good run"),
                   (command_for(ctx, "capture", tid, "--step", "N"), "name the off-rails step yourself"))


def _fmt_ms(ms: Optional[int]) -> str:
    if ms is None:
        return "?"
    if abs(ms) < 1000:
        return f"{ms} ms"
    s = ms / 1000
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


def render(report: Any, *, last: int, full: bool, url: Optional[str] = None) -> None:
    out = out_console()
    limit = None if full else TRIM
    h = report.header()
    t = report.trajectory
    status = h["status"] + (" (stale: no activity for 15+ min)" if h["stale"] else "")
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    fresh = h["seconds_since_last_activity"]
    rows = [
        ("trace", h["trace_id"]), ("user", h["user_id"] or "?"), ("status", status),
        ("started", h["start"] or "?"), ("duration", _fmt_ms(h["duration_ms"])),
        ("cost", f"${h['cost_usd']:.4f}"), ("model", h["model"] or "?"),
        ("steps", f"{h['step_count']} ({h['tool_calls']} tool calls)"),
        ("freshness", f"data as of {h['as_of']}; last activity {fresh} s before that"
         if fresh is not None else f"data as of {h['as_of']}"),
        ("store", h["source"]),
    ]
    for k, v in rows:
        head.add_row(Text(k), link_text(v, url) if k == "trace" else safe_text(v, 200))
    print_table(head)

    verdict_step = report.verdict.step_index
    verdict_call = report.verdict.call_step_index
    # the ranked candidates: 1 is the verdict's own step
    rank = {c.step_index: n for n, c in enumerate(report.verdict.candidates, 1) if c.step_index is not None}
    flagged = {f.step_index: f for f in sorted(report.findings, key=lambda f: ("high", "medium", "low").index(f.severity), reverse=True)}
    # framework plumbing (graph nodes, chains, prompts, turns) is folded away unless --full
    folded = [s for s in t.steps if s.plumbing and s.index != verdict_step and not full]
    steps = [s for s in reversed(t.steps) if full or not s.plumbing or s.index == verdict_step]
    # --last N: the newest N, and always the verdict's step, its call and the candidates
    keep = {verdict_step, verdict_call, *rank}
    shown = steps if last == 0 else [s for n, s in enumerate(steps) if n < last or s.index in keep]
    table = Table(title="steps, newest first", title_justify="left", show_lines=True)
    for col, kw in (("#", {"justify": "right"}), ("+time", {"justify": "right"}), ("step / id", {}),
                    # --full: a long unbroken value (a URL, base64) wraps instead of ending in "…"
                    ("arguments / model text", {"ratio": 3, "overflow": "fold" if full else "ellipsis"}),
                    ("output", {"ratio": 3, "overflow": "fold" if full else "ellipsis"}),
                    ("level / status", {}), ("tokens in/out", {"justify": "right"}),
                    ("cost", {"justify": "right"})):
        table.add_column(col, **kw)
    for s in shown:
        j = report.step_json(s)
        if s.is_tool and "arguments" in s.not_recorded:
            what = Text("(arguments not recorded by the tracer)", style="yellow")
            output = safe_text(j["output"], limit)
        elif s.is_tool:
            what = safe_text(j["args"], limit)
            output = safe_text(j["output"], limit)
        elif s.is_model and "output" in s.not_recorded:
            what, output = Text("(model output not recorded by the tracer)", style="yellow"), Text("")
        elif s.is_model:
            calls = j["tool_calls"] or []
            what = safe_text(j["text"] or "", limit)
            if calls:
                what.append_text(Text("\n-> ", style="dim"))
                what.append_text(safe_text(", ".join(str(c.get("name")) for c in calls), 200, style="dim"))
            output = Text("")
        else:
            what, output = safe_text(s.input, limit), safe_text(s.output, limit)
        level = Text(s.level, style="bold red" if s.level == "ERROR" else "yellow" if s.level == "WARNING" else "dim")
        if s.status_message:
            level.append_text(Text("\n")).append_text(safe_text(s.status_message, limit))
        for p in s.problems:
            level.append_text(Text("\n")).append_text(safe_text(f"could not read: {p}", 200, style="yellow"))
        tokens = f"{s.input_tokens or 0:,}/{s.output_tokens or 0:,}" if s.input_tokens or s.output_tokens else ""
        name = safe_text(s.name if s.is_tool else f"{s.kind}: {s.name}", 120, style="bold" if s.is_tool else "")
        name.append_text(Text("\n")).append_text(safe_text(s.id, 60, style="dim"))
        if s.index in rank:
            name.append_text(Text(f"\ncandidate {rank[s.index]}", style="bold"))
        f = flagged.get(s.index)
        if f is not None and f.severity != "low":
            name.append_text(Text(f"\n{f.kind}", style=SEVERITY_STYLE[f.severity]))
        index = Text(str(s.index), style="reverse bold red" if s.index == verdict_step and report.verdict.kind != "none"
                     else "bold red" if s.index == verdict_call and report.verdict.kind != "none" else "")
        table.add_row(index, Text(_fmt_ms(j["offset_ms"])), name, what, output, level, Text(tokens),
                      Text(f"${s.cost_usd:.4f}" if s.cost_usd else ""))
    print_table(table)
    if len(shown) < len(steps):
        out.print(Text(f"{len(steps) - len(shown)} earlier step(s) not shown (--last 0 shows all)", style="dim"))
    if folded:
        out.print(Text(f"{len(folded)} plumbing step(s) folded away (graph nodes, chains, prompts, turns; "
                       "--full or --json shows them)", style="dim"))

    if report.problems:
        out.print(Text("missing or could not read:", style="bold yellow"))
        for p in report.problems[:50]:
            out.print(Text("  ").append_text(safe_text(p, 300)))
        if len(report.problems) > 50:
            out.print(Text(f"  ... and {len(report.problems) - 50} more"))

    if report.findings:
        ft = Table(title="findings", title_justify="left")
        for col in ("step", "severity", "kind", "evidence"):
            ft.add_column(col, justify="right" if col == "step" else "left")
        for f in report.findings:
            ft.add_row(str(f.step_index), Text(f.severity, style=SEVERITY_STYLE.get(f.severity, "")),
                       Text(f.kind), safe_text(f.evidence, None if full else 400))
        print_table(ft)
    else:
        out.print(Text("findings: none"))

    d = report.diff
    if d is not None:
        line = Text(f"golden diff ({d.mode}, args {d.args}) against ", style="bold")
        line.append_text(safe_text(d.golden, 200))
        out.print(line)
        if d.matched:
            out.print(Text("  matches the golden run", style="green"))
        else:
            out.print(Text("  ").append_text(safe_text(d.divergence.describe(), 400, style="yellow")))
            if d.divergence.expected is not None:
                out.print(Text("  expected there: ").append_text(
                    safe_text(f"{d.divergence.expected.tool} {d.divergence.expected.args}", limit)))
        out.print(Text("  expected: ").append_text(safe_text(" -> ".join(d.expected_tools), 600)))
        out.print(Text("  actual:   ").append_text(safe_text(" -> ".join(d.actual_tools), 600)))

    v = report.verdict
    if len(v.candidates) > 1:
        out.print(Text("candidates:", style="bold"))
        for n, c in enumerate(v.candidates, 1):
            where = f"step {c.step_index}" + (f" (call {c.call_step_index})" if c.call_step_index not in (None, c.step_index) else "")
            out.print(Text(f"  {n}. {where} [{c.kind}, {c.severity}] ").append_text(safe_text(c.evidence, 300)))
    out.print(Text("verdict: ", style="bold red" if v.kind != "none" else "bold")
              .append_text(safe_text(v.sentence, None if full else 600))
              .append_text(Text(f" (confidence {v.confidence})", style="dim")))
