"""`agentfire traces`: recent trajectories, to find the failing run without a link in the alert."""

from __future__ import annotations

from typing import Any, Optional

import typer
from rich.table import Table
from rich.text import Text

from agentfire.cli._app import (
    app, emit_json, err_console, handles_errors, safe_text, state, want_json,
)
from agentfire.cli._output import agentfire_cmd, id_column, next_steps, optional_column, print_table

STATUS_STYLE = {"running": "bold yellow", "error": "bold red", "finished": ""}
SEVERITY_STYLE = {"high": "bold red", "medium": "yellow", "low": "dim"}


def _complete_kind(incomplete: str) -> list[str]:
    from agentfire.tracelist import finding_kinds

    return [k for k in finding_kinds() if k.startswith(incomplete)]


@app.command(epilog=(
    "Example: agentfire traces --since 2h --tool send_email --finding untrusted_steering\n\n"
    "More: agentfire traces --errors --user user-4821;  agentfire traces --running --json | "
    "jq -r '.traces[].trace_id';  agentfire traces | cut -f1   (piped: tab-separated rows)"
))
@handles_errors
def traces(
    ctx: typer.Context,
    since: str = typer.Option("1h", "--since", metavar="DURATION", help="Window: the last 30m, 6h, 2d..."),
    user: Optional[str] = typer.Option(None, "--user", metavar="USER_ID", help="Only this user's trajectories."),
    tool: Optional[str] = typer.Option(None, "--tool", metavar="NAME",
                                       help="Only trajectories that called this tool (exact or glob: send_*)."),
    errors: bool = typer.Option(False, "--errors", help="Only trajectories that ended in error or hold an ERROR step."),
    running: bool = typer.Option(False, "--running", help="Only trajectories still running."),
    finding: Optional[str] = typer.Option(
        None, "--finding", metavar="KIND", autocompletion=_complete_kind,
        help="Only trajectories where triage's detectors find KIND (untrusted_steering, "
             "prose_vs_action, destructive, unreacted_error, loop, context_blowup, ...)."),
    limit: int = typer.Option(30, "--limit", "-n", metavar="N", min=1, max=1000,
                              help="At most N trajectories (1..1000)."),
    json_out: bool = typer.Option(False, "--json", help="JSON on stdout."),
) -> None:
    """Recent trajectories from the configured trace store, newest first: status, user, steps,
    cost and the top triage finding, with a UI link when the store is Langfuse or Phoenix.
    Finds the failing run when the alert has no link, and a golden run to diff against.
    Exit 0 (also when nothing matches), 1 when the store cannot be read, 2 on bad input."""
    from agentfire import tracelist
    from agentfire.budget import parse_duration
    from agentfire.links import linker

    st = state(ctx)
    rb = st.runbook()
    since_s = parse_duration(since, "--since")
    as_json = want_json(ctx, json_out)
    console = err_console()
    kw: dict[str, Any] = dict(since_s=since_s, user=user, tool=tool, errors=errors, running=running,
                              finding=finding, limit=limit)
    if console.is_terminal and not as_json:
        with console.status("reading recent trajectories ..."):
            result = tracelist.recent(rb, **kw)
    else:
        result = tracelist.recent(rb, **kw)
    link = linker(rb)
    for r in result.rows:
        r.url = link(r.trace_id)
    if as_json:
        emit_json(result.to_json())
        return
    render(result)
    if not result.rows:
        what = " ".join(n if v is True else f"{n} {v}" for n, v in (
            ("--user", user), ("--tool", tool), ("--errors", errors), ("--running", running),
            ("--finding", finding)) if v)
        console.print(Text(f"no trajectory in the last {since} matches" + (f" ({what})" if what else "")
                           + f"; {result.scanned} trajectories in the window"))
        import fnmatch

        if tool and result.tools_seen and not any(fnmatch.fnmatchcase(t, tool) for t in result.tools_seen):
            console.print(Text("tools seen: ").append_text(safe_text(", ".join(result.tools_seen), 600)))
        return
    if result.truncated:
        console.print(Text(f"more match: showing the newest {len(result.rows)} (--limit N for more, "
                           "--since for a shorter window)", style="dim"))
    pick = next((r for r in result.rows if r.top_finding and r.top_finding["severity"] != "low"),
                result.rows[0])
    next_steps(agentfire_cmd("triage", pick.trace_id))


def render(result: Any) -> None:
    table = Table(title=f"recent trajectories  ({result.store}, newest first)", title_justify="left")
    id_column(table, "trace")
    optional_column(table, "started (UTC)", drop=3, no_wrap=True)
    table.add_column("status", no_wrap=True)
    id_column(table, "user")
    table.add_column("steps", justify="right", no_wrap=True)
    optional_column(table, "cost", drop=2, justify="right", no_wrap=True)
    table.add_column("top finding")
    optional_column(table, "link", drop=1, no_wrap=True, overflow="ignore")
    for r in result.rows:
        f = r.top_finding
        finding = (Text.assemble((f["severity"], SEVERITY_STYLE.get(f["severity"], "")),
                                 f" {f['kind']} @{f['step']}") if f else Text("-", style="dim"))
        table.add_row(safe_text(r.trace_id, 200), Text(f"{r.start:%m-%d %H:%M:%S}" if r.start else "?"),
                      Text(r.status, style=STATUS_STYLE.get(r.status, "")), safe_text(r.user_id or "-", 120),
                      Text(f"{r.steps} ({r.tool_calls})"), Text(f"${r.cost_usd:.4f}"), finding,
                      Text(r.url or "-", style=f"link {r.url}" if r.url else "dim"))
    if not result.rows:
        return
    print_table(table)

