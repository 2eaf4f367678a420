"""`agentfire runbook` (the timed walk) and `agentfire report` (the incident's timeline)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from agentfire.cli._app import (
    app, emit_json, err_console, fail, handles_errors, interactive, out_console, safe_text, state,
    want_json, write_out,
)
from agentfire.cli._output import print_table


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s"


def _show_step(walk: Any, step: Any, index: int, total: int, command: str | None) -> None:
    elapsed = walk.elapsed_s()
    late = elapsed - step.target_seconds
    timing = Text(f"incident clock {_clock(elapsed)}  target {_clock(step.target_seconds)}  ")
    timing.append("LATE by " + _clock(late) if late > 0 else f"{_clock(-late)} left",
                  style="bold red" if late > 0 else "green")
    body = Text.assemble((f"{step.title}\n", "bold"), timing, "\n")
    if step.check:
        body.append(Text(f"check before moving on: {step.check}", style="dim"))
    # the err console keeps warnings on one line (soft_wrap); a panel must wrap inside its box
    err_console().print(Panel(body.rstrip() or body, title=f"step {index}/{total}: {step.id}",
                              title_align="left"), soft_wrap=False)
    # the proposed command whole, outside the box, as one line the terminal wraps: never cut,
    # and a copy of it is the command [r]un runs
    err_console().print(Text("proposed: ") + (safe_text(command, None, style="bold cyan") if command
                                              else Text("(needs a value first)", style="yellow")),
                        soft_wrap=True)


def _show_result(rec: Any, result: Any, name: str = "") -> None:
    from agentfire.cli._walkview import summary

    style = "bold green" if rec.status == "ok" else "bold red"
    line = Text(f"{rec.id}: {rec.status.upper()} (exit {result.exit_code}, {result.duration_ms} ms)", style=style)
    err_console().print(line)
    for s in summary(name, result.document):
        # one logical line each (the terminal wraps it): ids and paths stay whole for copying
        err_console().print(Text("  ").append_text(safe_text(s, 600)), soft_wrap=True)


def _resume_hint(ctx: Any, journal: Any, walk: Any) -> None:
    """One copy-pasteable command that resumes this walk, with the trace it was walking."""
    from agentfire.cli._output import quote

    trace = walk.values().get("trace_id") if walk is not None else None
    parts = ["--incident", quote(journal.incident), "runbook"]
    if trace:
        parts += ["--trace", quote(trace)]
    head = "agentfire"
    st = state(ctx)
    if st.config and os.environ.get("AGENTFIRE_CONFIG") != st.config:
        head += f" --config {quote(st.config)}"
    err_console().print(Text.assemble("stopped; resume with: ", (f"{head} {' '.join(parts)}", "bold")),
                        soft_wrap=True)


def _remembered_trace(journal: Any) -> Any:
    """The trace a walk of this incident was started (or told) with, from its journal."""
    trace = None
    for e in journal.iter_entries():
        if e.get("action") in ("runbook.start", "runbook.trace") and e.get("trace_id"):
            trace = e["trace_id"]
    return trace


def _ask(question: str, choices: str, default: str) -> str:
    while True:
        answer = typer.prompt(question, default=default, err=True).strip().lower()[:1]
        if answer in choices:
            return answer


@app.command(epilog=(
    "Example: agentfire runbook --trace tr-8f2c        (interactive, on a terminal)\n\n"
    "Example: agentfire --incident inc-42 runbook --auto --trace tr-8f2c --json"))
@handles_errors
def runbook(
    ctx: typer.Context,
    trace: Optional[str] = typer.Option(None, "--trace", help="The trace id from the alert (feeds triage)."),
    auto: bool = typer.Option(False, "--auto", help="Non-interactive: run every proposed command."),
    answers: Optional[Path] = typer.Option(None, "--answers", help="YAML answers for --auto: trace_id, steps: {ID: skip|COMMAND}."),
    step_timeout: float = typer.Option(600, "--step-timeout", min=1, max=86400, help="Seconds before a step's command is stopped."),
    json_out: bool = typer.Option(False, "--json", help="JSON report on stdout at the end."),
) -> None:
    """Walk the runbook's steps in order, timed against their targets, into the incident journal.
    Resumable: run it again with the same --incident and it continues at the first unfinished step.
    Exit 0 when every step ended ok (or was skipped by a person), 1 otherwise."""
    from agentfire import report as report_mod
    from agentfire.journal import is_drill
    from agentfire.walk import Walk, load_answers, plan, plan_problems, template_names, walk_lock

    st = state(ctx)
    rb = st.runbook()
    ans = load_answers(str(answers), [s.id for s in plan(rb)]) if answers else {}
    base: dict[str, Any] = dict(ans.get("variables") or {})
    if ans.get("trace_id"):
        base["trace_id"] = ans["trace_id"]
    if trace:
        base["trace_id"] = trace
    if not auto and not interactive():
        raise fail("no terminal: use --auto (with --trace or --answers) to walk without a person", 2)
    overrides = (ans.get("steps") or {}) if auto else {}
    resumed = bool(st.incident)
    journal = st.journal(create=True)  # nothing is written until the walk starts
    if "trace_id" not in base and journal.exists():
        remembered = _remembered_trace(journal)  # a resumed walk remembers its trace
        if remembered:
            base["trace_id"] = remembered
    walk = Walk(rb, journal, st.actor, base)
    recs = walk.state()
    pending = [s for s in walk.steps if not recs[s.id].done]
    problem = plan_problems(pending, walk.values(), overrides)
    if problem and not auto and "trace_id" not in walk.values() and any(
            "trace_id" in template_names(s.command) for s in pending):
        # a person is here: ask for the alert's trace id now, not after kill and freeze ran
        walk.base_values["trace_id"] = typer.prompt("trace id from the alert", err=True).strip()
        problem = plan_problems(pending, walk.values(), overrides)
    if problem:
        if auto:  # before anything runs: a walk must not stop half-way, after kill and freeze
            raise fail(problem, 2)
        err_console().print(Text(problem + " (you can edit the command when its step comes up)",
                                 style="yellow"))
    with walk_lock(journal, st.actor) as stale:
        if stale:
            err_console().print(Text(
                f"taking over a stale walk lock: pid {stale.get('pid')} on {stale.get('host')} "
                f"(since {stale.get('since')}) is gone", style="yellow"))
        if resumed and any(r.status != "pending" for r in walk.state().values()):
            err_console().print(Text(f"resuming incident {journal.incident}"
                                     + (f" (trace {base['trace_id']})" if base.get("trace_id") else ""),
                                     style="bold"))
        given = walk.base_values.get("trace_id")
        if not journal.exists():
            journal.append("runbook.start", actor=st.actor, trace_id=given, auto=auto)
        elif given and given != _remembered_trace(journal):
            journal.append("runbook.trace", actor=st.actor, trace_id=given)
        try:
            _walk_steps(ctx, walk, journal, auto=auto, overrides=overrides, step_timeout=step_timeout,
                        json_out=json_out)
        except (KeyboardInterrupt, EOFError, click_abort()):
            # Ctrl-C during a step or at a prompt, Ctrl-D at a prompt: the step is proposed again
            err_console().print()
            _resume_hint(ctx, journal, walk)
            raise typer.Exit(130) from None
        if is_drill(journal):  # what the drill is scored on: the regions as this walk ended
            from agentfire import drill

            drill.observe(walk.runbook, journal, st.actor, "runbook ended")
    doc = report_mod.build(journal, walk.steps)
    if want_json(ctx, json_out):
        emit_json(doc)
    else:
        _render_steps(doc)
    if any(r["status"] not in ("ok", "skipped") for r in doc["steps"]):
        raise typer.Exit(1)


def click_abort() -> Any:
    """The Abort that typer.prompt raises on Ctrl-C/Ctrl-D (typer >= 0.20 vendors click)."""
    abort = getattr(typer, "Abort", None)
    if abort is None:
        import click

        abort = click.exceptions.Abort
    return abort


def _ask_expected(walk: Any, step: Any) -> None:
    """On a terminal, the capture step asks the person what the agent should have done."""
    from agentfire.walk import expected_is_derived

    if not expected_is_derived(step.command, walk.base_values):
        return
    derived = walk.values().get("expected")
    hint = f" (Enter keeps the derived one: {derived})" if derived else ""
    answer = typer.prompt(f"What should the agent have done instead?{hint}", default="",
                          show_default=False, err=True).strip()
    if answer:
        walk.base_values["expected"] = answer


def _walk_steps(ctx: Any, walk: Any, journal: Any, *, auto: bool, overrides: dict[str, Any],
                step_timeout: float, json_out: bool) -> None:
    st = state(ctx)
    total = len(walk.steps)
    failed = False
    echo = (lambda s: err_console().print(safe_text(s.rstrip(), 4000, style="dim"))) if not json_out else None
    while True:
        step = walk.next_step()
        if step is None:
            break
        index = walk.steps.index(step) + 1
        override = overrides.get(step.id)
        if override == "skip":
            walk.skip(step, "answers file")
            continue
        try:
            command = override or walk.propose(step)
        except Exception as exc:
            if auto:
                raise
            command = None
            err_console().print(Text(str(exc), style="yellow"))
        if not auto:
            if command is not None and not override:
                _ask_expected(walk, step)
                command = walk.propose(step)
            _show_step(walk, step, index, total, command)
            if command is None:
                if "trace_id" not in walk.values():
                    trace = typer.prompt("trace id from the alert", err=True).strip()
                    walk.base_values["trace_id"] = trace
                    journal.append("runbook.trace", actor=st.actor, trace_id=trace)  # for a resume
                    continue
                choice = _ask("[e]dit / [s]kip / [q]uit", "esq", "e")
            else:
                choice = _ask("[r]un / [e]dit / [s]kip / [q]uit", "resq", "r")
            if choice == "q":
                _resume_hint(ctx, journal, walk)
                raise typer.Exit(1)
            if choice == "s":
                reason = typer.prompt("why skip", default="skipped by responder", err=True)
                walk.skip(step, reason)
                continue
            if choice == "e":
                command = typer.prompt("command", default=command or step.command, err=True)
        assert command is not None
        rec, result = walk.run(step, command, timeout_s=step_timeout, echo_stderr=echo)
        if not json_out:
            from agentfire.walk import command_argv

            _show_result(rec, result, command_argv(command, config="", actor="")[1])
        if rec.status != "ok":
            if auto:
                failed = True
                break
            choice = _ask("step failed: [r]etry / [s]kip / [q]uit", "rsq", "r")
            if choice == "q":
                _resume_hint(ctx, journal, walk)
                raise typer.Exit(1)
            if choice == "s":
                walk.skip(step, typer.prompt("why skip", default="failed; skipped by responder", err=True))


def _render_steps(doc: dict[str, Any]) -> None:
    table = Table(title=f"runbook: incident {doc['incident']}", title_justify="left")
    for col in ("step", "status", "done at", "target", "on time", "who", "command"):
        table.add_column(col)
    for r in doc["steps"]:
        ontime = {True: Text("yes", style="green"), False: Text("LATE", style="bold red"), None: Text("-")}[r["on_time"]]
        table.add_row(Text(r["step"]), Text(r["status"], style="green" if r["status"] == "ok" else "bold red"),
                      Text(_clock(r["done_at_s"]) if r["done_at_s"] is not None else "-"),
                      Text(_clock(r["target_seconds"])), ontime, safe_text(r["actor"] or "-", 40),
                      safe_text(r["command"] or "-", 120))
    print_table(table)


@app.command(epilog="Example: agentfire report inc-20261123-101500-ab12 --out incident.md")
@handles_errors
def report(
    ctx: typer.Context,
    incident: Optional[str] = typer.Argument(None, help="Incident id (default: --incident, else the latest)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the markdown (.md) or JSON (.json) report here."),
    json_out: bool = typer.Option(False, "--json", help="JSON on stdout."),
) -> None:
    """The incident's timeline: each runbook step's time against its target, every action and its
    outcome, who did what. Markdown on stdout (or --out FILE), JSON with --json."""
    from agentfire import report as report_mod
    from agentfire.journal import Journal, check_incident_id, list_incidents
    from agentfire.walk import plan

    st = state(ctx)
    rb = st.runbook()
    inc = incident or st.incident or next(iter(list_incidents(rb.journal_dir)), None)
    if not inc:
        raise fail(f"no incidents in {rb.journal_dir}", 1)
    journal = Journal(rb.journal_dir, check_incident_id(inc))
    if not journal.exists():
        raise fail(f"incident {inc} has no journal in {rb.journal_dir}", 1)
    doc = report_mod.build(journal, plan(rb))
    md = report_mod.to_markdown(doc)
    if out:
        write_out(out, doc, md)
    if want_json(ctx, json_out):
        emit_json(doc)
    elif not out:
        if sys.stdout.isatty():  # a person: rendered (headings, tables), not raw markdown
            from rich.markdown import Markdown

            out_console().print(Markdown(md))
        else:  # a pipe or a file: the markdown itself
            sys.stdout.write(md)
