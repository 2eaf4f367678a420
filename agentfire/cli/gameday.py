"""`agentfire gameday start|score|run`: drills with a score."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table
from rich.text import Text

from agentfire.cli._app import (
    app, emit_json, err_console, fail, handles_errors, out_console, safe_text, state, want_json,
    write_out,
)
from agentfire.cli._output import print_table

# the scenarios `agentfire.sandbox.scenarios()` knows (tests/test_help_and_completion.py keeps
# them equal); written out so that --help does not import the sandbox
SCENARIO_NAMES = "wrong_recipient, destructive_sql, runaway_loop or papered_error"

gameday_app = typer.Typer(
    name="gameday", no_args_is_help=True, rich_markup_mode=None,
    help="Rehearse the runbook: inject a failure, time the responder, score the answers.",
    epilog="Example: agentfire gameday run wrong_recipient --auto",
)
app.add_typer(gameday_app)


def _page(start: Any) -> None:
    # plain lines, never wrapped or cut: a page is copied from, so the command must stay whole
    err_console().print(Text("YOU ARE PAGED", style="bold yellow"))
    err_console().print(safe_text(start.page, 2000), soft_wrap=True)


@gameday_app.command("start", epilog="Example: agentfire gameday start runaway_loop --target sandbox")
@handles_errors
def start_cmd(
    ctx: typer.Context,
    scenario: str = typer.Argument(..., help="The scenario: " + SCENARIO_NAMES + "."),
    target: str = typer.Option("sandbox", "--target", help="sandbox (local files store) or staging (the configured trace store's ingestion)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed for the synthetic trajectories (default: from the clock)."),
    traces: Optional[int] = typer.Option(None, "--traces", help="How many trajectories to inject (default 600 sandbox, 60 staging)."),
    page: bool = typer.Option(False, "--page", help="Also send the page through watch.routes (Alertmanager, Slack, PagerDuty, webhook), marked as a drill; the score's clock starts at its delivery."),
    json_out: bool = typer.Option(False, "--json", help="JSON on stdout."),
) -> None:
    """Inject the scenario's failure, arm the kill switch (agent on everywhere), start the clock
    and print the page an on-call would get (--page: send it for real, marked as a drill)."""
    from agentfire import drill

    st = state(ctx)
    rb = st.runbook().for_drill()  # only what the runbook's gameday: section lets drills touch
    if page and not rb.model.watch.routes:
        raise fail("--page sends through watch.routes in runbook.yaml, and it lists none", 2)
    journal = st.journal(create=True)
    started = drill.start(rb, journal, actor=st.actor, scenario=scenario, target=target, seed=seed,
                          traces=traces)
    paged = drill.send_page(rb, journal, started, actor=st.actor) if page else None
    if want_json(ctx, json_out):
        doc = started.to_json()
        if paged is not None:
            doc["paged"] = {"delivered_at": paged["delivered_at"], "deliveries": paged["deliveries"]}
        emit_json(doc)
    else:
        _page(started)
        if paged is not None:
            err_console().print(Text(f"page delivered at {paged['delivered_at']} through "
                                     + ", ".join(sorted({d['route'] for d in paged['deliveries'] if d['ok']}))))
        out_console().print(Text(f"drill {started.incident}: score it with "
                                 f"agentfire gameday score {started.incident}"))


def _render_score(doc: dict[str, Any]) -> None:
    t = Table(title=f"gameday {doc['incident']}: {doc['scenario']} ({doc['target']})", title_justify="left")
    for col in ("minute", "done at", "target", "on time"):
        t.add_column(col)
    for row in doc["timing"]:
        done = f"{row['seconds']:.0f}s" if row["seconds"] is not None else "never"
        ontime = {True: Text("yes", style="green"), False: Text("LATE", style="bold red"),
                  None: Text("-")}[row["on_time"]]
        t.add_row(row["minute"], Text(done, style="" if row["seconds"] is not None else "bold red"),
                  f"{row['target_seconds'] or '-'}s", ontime)
    print_table(t)
    c = Table(title="answers", title_justify="left")
    for col in ("check", "ok", "expected", "got"):
        c.add_column(col)
    for name, chk in doc["checks"].items():
        c.add_row(name.replace("_", " "), Text("yes" if chk["ok"] else "NO", style="green" if chk["ok"] else "bold red"),
                  safe_text(chk.get("expected"), 200), safe_text(chk.get("got"), 200))
    print_table(c)
    lines = Table(title="the runbook's lines", title_justify="left")
    for col in ("step", "verdict", "status", "runs", "line"):
        lines.add_column(col)
    style = {"load-bearing": "green", "workaround": "yellow", "fiction": "bold red"}
    for r in doc["runbook_lines"]:
        lines.add_row(r["step"], Text(r["verdict"], style=style[r["verdict"]]), r["status"], str(r["runs"]),
                      safe_text(r["command"], 120))
    print_table(lines)
    out_console().print(Text("PASSED" if doc["passed"] else "FAILED", style="bold green" if doc["passed"] else "bold red"))


def _drill_journal(ctx: typer.Context, incident: Optional[str]) -> tuple[Any, Any]:
    """The drill's runbook view and journal: the incident given, the current one, or the latest drill."""
    from agentfire.journal import Journal, check_incident_id, latest_incident_with

    st = state(ctx)
    rb = st.runbook()
    inc = incident or st.incident or latest_incident_with(rb.journal_dir, "gameday.start")
    if not inc:
        raise fail("no drill to score: start one with agentfire gameday start SCENARIO", 1)
    return rb if getattr(rb, "drill_scope", None) else rb.for_drill(), Journal(rb.journal_dir, check_incident_id(inc))


def _score(ctx: typer.Context, incident: Optional[str], out: Optional[Path], json_out: bool,
           extra: dict[str, Any] | None = None) -> dict[str, Any]:
    from agentfire import drill

    rb, journal = _drill_journal(ctx, incident)
    doc = drill.score(rb, journal)
    if extra:
        doc.update(extra)
    md = drill.score_markdown(doc)
    if out:
        write_out(out, doc, md)
    if want_json(ctx, json_out):
        emit_json(doc)
    else:
        _render_score(doc)
    return doc


@gameday_app.command("score", epilog="Example: agentfire gameday score inc-20261123-101500-ab12 --out drill.md")
@handles_errors
def score_cmd(
    ctx: typer.Context,
    incident: Optional[str] = typer.Argument(None, help="The drill's incident id (default: the latest drill)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the report as markdown (.md) or JSON (.json)."),
    json_out: bool = typer.Option(False, "--json", help="JSON on stdout."),
    restore: bool = typer.Option(False, "--restore", help="Then put back what the drill changed "
                                 "(regions as before the drill, its freeze lifted), read back and journaled."),
) -> None:
    """Compare the drill's journal with the scenario's ground truth: time to each minute, whether
    triage named the right step, blast counted the right users, every region ended off; which
    runbook lines were load-bearing and which were fiction. Exit 0 only when the drill passed.
    A drill walked by hand (gameday start, then runbook) is left as it ended: the score says what
    it left and how to reset it, or --restore puts it back."""
    from agentfire import drill

    st = state(ctx)
    rb, journal = _drill_journal(ctx, incident)
    if restore and not any(e.get("action") == "gameday.observed" for e in journal.iter_entries()):
        # the score reads this observation, so restoring cannot change it
        drill.observe(rb, journal, st.actor, "score --restore")
    doc = _score(ctx, journal.incident, out, json_out)
    restored = None
    if restore:
        restored = drill.restore(rb, journal, st.actor)
        _say_left(restored["left"], restored, keep=False)  # on stderr, --json or not
    elif not want_json(ctx, json_out):
        left_behind(rb, journal)  # what the drill left, and the commands that reset it
    if not doc["passed"] or (restored is not None and not restored["restored"]):
        raise typer.Exit(1)


@gameday_app.command("run", epilog="Example: agentfire gameday run destructive_sql --auto --out drill.md")
@handles_errors
def run_cmd(
    ctx: typer.Context,
    scenario: str = typer.Argument(..., help="The scenario to drill: " + SCENARIO_NAMES + "."),
    auto: bool = typer.Option(False, "--auto", help="Required: run the commands a good responder would run."),
    target: str = typer.Option("sandbox", "--target", help="sandbox or staging."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed for the synthetic trajectories."),
    traces: Optional[int] = typer.Option(None, "--traces", help="How many trajectories to inject."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the score as markdown (.md) or JSON (.json)."),
    keep: bool = typer.Option(False, "--keep", help="Leave the regions and caps as the drill ended (default: restore them)."),
    json_out: bool = typer.Option(False, "--json", help="The score as JSON on stdout."),
) -> None:
    """The whole drill scripted end to end: start, walk the runbook with --auto, score. Exit 0 only
    if every step worked and every answer was right: put it in CI so the runbook never rots.
    It ends by putting back what it changed (regions as before the drill, its freeze lifted)
    unless --keep, and says what state it left."""
    from agentfire import drill
    from agentfire.walk import Walk, walk_lock

    if not auto:
        raise fail("gameday run needs --auto (a person walks a drill with gameday start + runbook)", 2)
    st = state(ctx)
    rb = st.runbook().for_drill()  # only what the runbook's gameday: section lets drills touch
    journal = st.journal(create=True)
    quiet = want_json(ctx, json_out)
    started = drill.start(rb, journal, actor=st.actor, scenario=scenario, target=target, seed=seed,
                          traces=traces)
    if not quiet:
        _page(started)
    with walk_lock(journal, st.actor):
        try:
            walk = Walk(rb, journal, st.actor, {"trace_id": started.alert_trace_id})
            while (step := walk.next_step()) is not None:
                command = walk.propose(step)
                rec, result = walk.run(step, command)
                if not quiet:
                    style = "green" if rec.status == "ok" else "bold red"
                    err_console().print(Text(f"{step.id}: {rec.status.upper()} ({result.duration_ms} ms)  ",
                                             style=style) + safe_text(command, 200))
                if rec.status != "ok":
                    err_console().print(safe_text(result.stderr.strip()[-1500:], 1500, style="red"))
                    break
        finally:
            # the score reads this observation; then the drill puts back what it changed, even
            # when a step failed or the walk was interrupted (a drill never leaves it killed)
            drill.observe(rb, journal, st.actor, "runbook ended")
            restored = None if keep else drill.restore(rb, journal, st.actor)
            left = restored["left"] if restored else drill.state_left(rb)
            _say_left(left, restored, keep)  # on stderr, --json or not
            if keep and not quiet:
                left_behind(rb, journal)  # what the drill left, and the commands that reset it
    doc = _score(ctx, journal.incident, out, json_out,
                 extra={"restored": None if restored is None else restored["restored"], "left": left})
    if not doc["passed"] or (restored is not None and not restored["restored"]):
        raise typer.Exit(1)
    if not quiet:
        sys.stderr.flush()


def left_behind(rb: Any, journal: Any) -> None:
    """What the drill changed and did not undo, and the commands that reset it."""
    entries = journal.entries()
    state_left: list[str] = []
    resets: list[str] = []
    kills = [e for e in entries if e.get("action") == "kill"]
    if kills:
        regions = sorted({r.get("region") for e in kills for r in (e.get("regions") or [])
                          if isinstance(r, dict) and r.get("outcome") in ("CONFIRMED", "ALREADY_OFF")})
        if regions:
            state_left.append(f"the agent is OFF in {', '.join(regions)}")
            resets.append(f"agentfire --incident {journal.incident} kill --undo --yes")
    freezes = [e for e in entries if e.get("action") == "freeze" and e.get("outcome") == "CONFIRMED"]
    if freezes:
        after = freezes[-1].get("after") or {}
        usd = after.get("freeze_usd")
        state_left.append(f"spend is frozen (cap ${usd:.4f}, admission {after.get('admission')})"
                          if isinstance(usd, (int, float)) else "spend is frozen")
        resets.append(f"agentfire --incident {journal.incident} freeze --lift --yes")
    cases = [e.get("case_id") for e in entries if e.get("action") == "capture" and e.get("case_id")]
    if cases:
        from agentfire.evalset import evalset_for

        path = evalset_for(rb).path  # the drill eval set
        try:
            path = path.relative_to(rb.base_dir)
        except ValueError:
            pass
        state_left.append(f"case {cases[-1]} is in {path}")
    if not any(e.get("action") == "incident.close" for e in entries):
        state_left.append(f"incident {journal.incident} is open")
        resets.append(f"agentfire incident close {journal.incident}")
    console = err_console()
    if state_left:
        console.print(Text("the drill left: ", style="bold") + Text("; ".join(state_left)), soft_wrap=True)
    for r in resets:
        console.print(Text.assemble(("reset: ", "bold"), (r, "cyan")), soft_wrap=True)


def _say_left(left: dict[str, Any], restored: Any, keep: bool) -> None:
    regions = ", ".join(f"{n} {'?' if on is None else 'on' if on else 'OFF'}" for n, on in left["regions"].items())
    caps = left.get("caps")
    frozen = [c["scope"] for c in caps if (c.get("effective") or {}).get("admission") == "frozen"] \
        if isinstance(caps, list) else []
    if keep:
        head, style = "left as the drill ended (--keep)", "bold yellow"
    elif restored and restored["restored"]:
        head, style = "restored what the drill changed", "green"
    else:
        head, style = "could NOT restore everything the drill changed", "bold red"
    err_console().print(Text(f"{head}: agent {regions}; spend "
                             + (f"frozen on {', '.join(frozen)}" if frozen else "not frozen by the drill"),
                             style=style))
