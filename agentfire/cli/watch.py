"""`agentfire watch`: page on off-rails trajectories, with the trace id (issue 16)."""

from __future__ import annotations

import time
from typing import Any, Optional

import typer
from rich.table import Table
from rich.text import Text

from agentfire.cli._app import app, emit_json, err_console, handles_errors, safe_text, state, want_json
from agentfire.cli._output import id_column, optional_column, print_table

ACTION_STYLE = {"trigger": "bold red", "update": "yellow", "resolve": "green", "none": "dim"}


@app.command(epilog=(
    "Example: agentfire watch --every 60s\n\n"
    "More: agentfire watch --once --json   (cron / Kubernetes CronJob: one round, exit 1 on a round error);  "
    "agentfire watch --once --since 2h   (first run: look back 2h)"
))
@handles_errors
def watch(
    ctx: typer.Context,
    every: Optional[str] = typer.Option(None, "--every", metavar="DURATION",
                                        help="Time between rounds (default: watch.every_seconds, 60s)."),
    once: bool = typer.Option(False, "--once", help="One round, then exit (cron, CronJob)."),
    since: str = typer.Option("10m", "--since", metavar="DURATION",
                              help="First run only (no saved position): read trajectories that ended this far back."),
    rounds: Optional[int] = typer.Option(None, "--rounds", min=1, metavar="N", help="Stop after N rounds."),
    json_out: bool = typer.Option(False, "--json", help="Each round's findings and alerts as one JSON line."),
) -> None:
    """Each round: read the trajectories that ended (or went stale) since the last round, run
    triage's detectors and the runbook's policies, group medium/high findings by signature, and
    page through watch.routes (Alertmanager, Slack, PagerDuty, webhook) when a group crosses its
    threshold; update the alert on later rounds and resolve it when it stops. State (position,
    open alerts) is saved under watch.state, so a restart neither pages twice nor misses a window.
    Only reads and pages: no journal, no flag, cap or eval-set change. Exit 0 when every round was
    clean, 1 when a round could not read the store or deliver an alert, 2 on bad input."""
    from agentfire import watch as core
    from agentfire.budget import parse_duration

    st = state(ctx)
    rb = st.runbook()
    since_s = parse_duration(since, "--since")
    every_s = parse_duration(every, "--every") if every else rb.model.watch.every_seconds
    as_json = want_json(ctx, json_out)
    console = err_console()
    n = 0
    failed = False
    try:
        while True:
            started = time.monotonic()
            result = core.run_round(rb, since_s=since_s)
            n += 1
            failed = failed or not result.ok
            if as_json:
                emit_json(result.to_json())
            else:
                render(result)
            if once or (rounds is not None and n >= rounds):
                break
            time.sleep(max(0.0, every_s - (time.monotonic() - started)))
    except KeyboardInterrupt:
        console.print(Text(f"watch stopped after {n} round(s)"))
    if failed:
        raise typer.Exit(1)


def render(result: Any) -> None:
    console = err_console()
    head = (f"{result.now:%H:%M:%S} round: {result.ended} ended, {result.triaged} triaged, "
            f"{len(result.findings)} findings, {result.running} running, read {result.read} "
            f"in {result.read_ms} ms ({result.store})")
    if result.drills_skipped:
        head += f"; {result.drills_skipped} drill trajectories ignored"
    if result.backlog:
        head += f"; {result.backlog} left for the next round"
    console.print(Text(head, style="dim"))
    shown = [a for a in result.alerts if a["action"] != "none"]
    if shown:
        t = Table(title="alerts", title_justify="left")
        t.add_column("action", no_wrap=True)
        t.add_column("kind")
        t.add_column("tool")
        id_column(t, "first trace")
        t.add_column("step", justify="right")
        t.add_column("traj", justify="right")
        t.add_column("users", justify="right")
        t.add_column("running", justify="right")
        optional_column(t, "run", drop=1)
        for a in shown:
            t.add_row(Text(a["action"].upper(), style=ACTION_STYLE.get(a["action"], "")), a["kind"],
                      safe_text(a.get("tool") or "-", 80), safe_text(a["first"]["trace_id"], 200),
                      str(a["step"]), str(a["trajectories"]), str(a["distinct_users"]),
                      "?" if a["still_running"] is None else str(a["still_running"]),
                      safe_text(a["commands"]["runbook"], 300))
        print_table(t)
        for a in shown:
            if a["action"] == "trigger":
                console.print(safe_text(a["sentence"], 600), soft_wrap=True)
    for e in result.errors:
        console.print(Text("round error: ", style="bold red") + safe_text(e, 600), soft_wrap=True)
