"""`agentfire doctor`."""

from __future__ import annotations

import typer
from rich.table import Table
from rich.text import Text

from agentfire.cli._app import app, emit_json, handles_errors, out_console, safe_text, state, want_json
from agentfire.cli._output import print_table


@app.command(epilog="Example: agentfire --config prod/runbook.yaml doctor")
@handles_errors
def doctor(
    ctx: typer.Context,
    json_out: bool = typer.Option(False, "--json", help="JSON on stdout."),
) -> None:
    """Validate runbook.yaml, check every environment variable it names, and probe every
    provider read-only for reachability and auth. Exit 1 if anything is wrong."""
    from agentfire.doctor import run_checks

    checks = run_checks(state(ctx).config)
    ok = all(c.ok for c in checks)
    if want_json(ctx, json_out):
        emit_json({"ok": ok, "checks": [c.to_json() for c in checks]})
    else:
        table = Table(title="agentfire doctor", title_justify="left")
        for col in ("area", "check", "status", "detail"):
            table.add_column(col)
        for c in checks:
            table.add_row(Text(c.area), safe_text(c.name, 80),
                          Text("WARN" if c.ok and c.warning else "ok" if c.ok else "FAIL",
                               style="bold yellow" if c.ok and c.warning else "green" if c.ok else "bold red"),
                          safe_text(c.detail, 500))
        print_table(table)
    if not ok:
        raise typer.Exit(1)
