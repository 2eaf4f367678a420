"""`agentfire incident close|list`: no incident is closed until its regression case is captured."""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table
from rich.text import Text

from agentfire.cli._app import (
    app, emit_json, err_console, fail, handles_errors, out_console, safe_text, state, want_json,
)
from agentfire.cli._output import id_column, optional_column, print_table

incident_app = typer.Typer(
    name="incident",
    help="List incidents, and close one once its regression case is in the eval set.",
    epilog="Example: agentfire incident list; agentfire incident close inc-20261123-101500-ab12",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(incident_app, name="incident")


@incident_app.command(
    "close",
    epilog="Example: agentfire incident close inc-20261123-101500-ab12 --verify 'pytest -q tests/test_regressions.py'",
)
@handles_errors
def close_cmd(
    ctx: typer.Context,
    incident: Optional[str] = typer.Argument(
        None, metavar="INCIDENT", help="Incident id (default: --incident, else the latest open one)."),
    verify: Optional[str] = typer.Option(
        None, "--verify", metavar="CMD",
        help="Run this test command first (no shell) and stay open unless it exits 0 "
             "(default: runbook.yaml evals.verify)."),
    json_out: bool = typer.Option(False, "--json", help="JSON on stdout."),
) -> None:
    """Close an incident: refuses while it has no captured regression case in the eval set,
    then writes the incident report (markdown and JSON) beside its journal: the timeline, each
    action and outcome, the off-rails step, the blast radius, the case ids.
    Exit 0 when closed (or already closed), 1 when refused, 2 on a usage error."""
    from agentfire import incident as core
    from agentfire.journal import Journal, check_incident_id

    st = state(ctx)
    rb = st.runbook()
    chosen = incident or st.incident
    if not chosen:
        chosen = core.latest_open(rb)
        if chosen is None:
            raise fail(f"no open incident in {rb.journal_dir}; pass an incident id", 2)
        err_console().print(Text(f"closing {chosen} (the latest open incident)"))
    journal = Journal(rb.journal_dir, check_incident_id(chosen))
    console = err_console()
    verify = verify or rb.model.evals.verify
    if verify and console.is_terminal and not want_json(ctx, json_out):
        with console.status(f"running {verify} ..."):
            result = core.close(rb, journal, actor=st.actor, verify=verify)
    else:
        result = core.close(rb, journal, actor=st.actor, verify=verify)
    if want_json(ctx, json_out):
        emit_json(result.to_json())
        return
    if result.already_closed:
        err_console().print(Text(f"incident {result.incident} is already closed; report: "
                                 f"{result.report_md}"))
        return
    cases = ", ".join(c["case_id"] for c in result.report.get("cases", []) if c["in_eval_set"])
    out_console().print(Text.assemble(("CLOSED ", "bold green"), (result.incident, "bold"),
                                      f"  cases: {cases}"))
    out_console().print(Text(f"report: {result.report_md}\n        {result.report_json}"))


@incident_app.command("list", epilog="Example: agentfire incident list --json | jq '.[] | select(.status==\"open\")'")
@handles_errors
def list_cmd(
    ctx: typer.Context,
    json_out: bool = typer.Option(False, "--json", help="JSON on stdout."),
) -> None:
    """Every incident in the journal directory, open and closed, newest first."""
    from agentfire import incident as core

    rb = state(ctx).runbook()
    rows = core.list_all(rb)
    if want_json(ctx, json_out):
        emit_json([r.to_json() for r in rows])
        return
    if not rows:
        err_console().print(Text(f"no incidents in {rb.journal_dir}"))
        return
    table = Table(title=f"incidents in {rb.journal_dir}", title_justify="left")
    id_column(table, "incident")
    table.add_column("status")
    table.add_column("opened", no_wrap=True)
    optional_column(table, "closed", drop=1, no_wrap=True)
    table.add_column("actions", justify="right")
    table.add_column("cases")
    optional_column(table, "last action", drop=2)
    style = {"open": "bold yellow", "closed": "green", "unknown": "bold red"}
    for r in rows:
        table.add_row(Text(r.id), Text(r.status.upper(), style=style[r.status]),
                      Text(r.opened_at or ""), Text(r.closed_at or ""), Text(str(r.actions)),
                      Text(", ".join(r.cases)), safe_text(r.problem or r.last_action or "", 200))
    print_table(table)
