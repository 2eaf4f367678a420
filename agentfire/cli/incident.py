"""`agentfire incident close|list`: no incident is closed until its regression case is captured."""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table
from rich.text import Text

from agentfire.cli._app import (
    app, emit_json, err_console, fail, handles_errors, out_console, safe_text, state, want_json,
    warn,
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
    from agentfire.journal import is_drill

    if is_drill(journal) and not getattr(rb, "drill_scope", None):
        rb = rb.for_drill()  # its cases are in the drill eval set
    console = err_console()
    shown = verify or (None if getattr(rb, "drill_scope", None) else rb.model.evals.verify)
    if shown and console.is_terminal and not want_json(ctx, json_out):
        with console.status(f"running {shown} ..."):
            result = core.close(rb, journal, actor=st.actor, verify=verify)
    else:
        result = core.close(rb, journal, actor=st.actor, verify=verify)
    if not result.already_closed:
        for left in result.report.get("still_in_effect", []):
            warn(f"{left['detail']}: restore with `{left['restore']}` (it is added to the report)")
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


@incident_app.command("current", epilog="Example: agentfire incident current --json")
@handles_errors
def current_cmd(
    ctx: typer.Context,
    json_out: bool = typer.Option(False, "--json", help="JSON on stdout."),
) -> None:
    """Which incident the next command will journal into (--incident, else $AGENTFIRE_INCIDENT),
    and whether it exists and is open. Exit 1 when the id names no incident (commands would
    refuse it unless --new)."""
    from agentfire import incident as core
    from agentfire.journal import Journal, check_incident_id

    import os

    st = state(ctx)
    rb = st.runbook()
    doc: dict = {"incident": st.incident, "source": None, "exists": False, "status": None,
                 "journal": None, "latest_open": core.latest_open(rb)}
    code = 0
    if st.incident:
        inc = check_incident_id(st.incident)
        journal = Journal(rb.journal_dir, inc)
        doc["source"] = ("$AGENTFIRE_INCIDENT" if os.environ.get("AGENTFIRE_INCIDENT") == inc
                         and not _on_command_line(inc) else "--incident")
        doc["exists"] = journal.exists()
        doc["journal"] = str(journal.path)
        if doc["exists"]:
            summary = core.summarize(journal)
            doc["status"] = summary.status
            doc["next_action"] = (
                f"commands journal into {inc}" if summary.status == "open" else
                f"{inc} is closed: actions are refused unless --reopen (kill --undo and "
                "freeze --lift are allowed)")
        elif st.new:
            doc["next_action"] = f"the next command that changes something opens {inc} (--new)"
        else:
            doc["next_action"] = (f"commands will refuse: {inc} has no journal in {rb.journal_dir} "
                                  "(a typo or a stale id? pass --new to open it)")
            code = 1
    else:
        doc["next_action"] = ("the next command that changes something opens a new incident "
                              "(pass --incident ID or export AGENTFIRE_INCIDENT to use one)")
    if want_json(ctx, json_out):
        emit_json(doc)
    else:
        if st.incident:
            style = {"open": "bold yellow", "closed": "green"}.get(doc["status"] or "", "bold red")
            out_console().print(Text.assemble(
                ("incident ", ""), (st.incident, "bold"), f"  (from {doc['source']})  ",
                ((doc["status"] or "NO JOURNAL").upper(), style)))
        else:
            out_console().print(Text("no incident selected"))
        out_console().print(safe_text(doc["next_action"], 400))
        if doc["latest_open"] and doc["latest_open"] != st.incident:
            out_console().print(Text(f"latest open incident: {doc['latest_open']}"))
    if code:
        raise typer.Exit(code)


def _on_command_line(incident: str) -> bool:
    import sys

    argv = sys.argv[1:]
    return any(a == "--incident" and argv[i + 1:i + 2] == [incident] or a == f"--incident={incident}"
               for i, a in enumerate(argv))
