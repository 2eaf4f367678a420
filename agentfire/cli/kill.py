"""`agentfire kill` and `agentfire status`: minute one."""

from __future__ import annotations

from typing import Any, Optional

import sys

import typer

from agentfire.cli._app import (
    app, emit_json, err_console, err_line, fail, handles_errors, interactive, confirm, out_console,
    plain_stream, safe_str, safe_text, state, want_json, warn,
)
from agentfire.cli._lazyrich import Table, Text  # Rich only when a table or a terminal needs it
from agentfire.cli._output import command_for, is_plain, next_steps, print_table, write_rows

OUTCOME_STYLE = {
    "CONFIRMED": "bold green", "ALREADY_OFF": "green", "ALREADY_ON": "green", "SKIPPED": "dim",
    "DRY_RUN": "cyan", "MISMATCH": "bold red", "PENDING_APPROVAL": "bold yellow",
    "RATE_LIMITED": "bold red", "NOT_FOUND": "bold red", "AUTH": "bold red",
    "UNREACHABLE": "bold red", "TIMEOUT": "bold red", "ERROR": "bold red",
}


def _onoff(v: Optional[bool]) -> str:
    return "?" if v is None else ("on" if v else "off")


def render_flip(result: Any) -> None:
    if is_plain():  # piped: print_table's tab-separated rows, without Rich
        write_rows([[r.region, r.provider, r.outcome.value, f"{_onoff(r.before)} -> {_onoff(r.after)}",
                     f"{r.latency_ms} ms", safe_str(r.detail, 300)] for r in result.regions])
        return
    title = f"{'kill' if result.action == 'kill' else 'undo'}: {result.flag}  (incident {result.incident})"
    if result.dry_run:
        title += "  [dry run: nothing changed]"
    table = Table(title=title, title_justify="left")
    for col in ("region", "provider", "outcome", "before -> after", "latency", "detail"):
        table.add_column(col, no_wrap=col != "detail", justify="right" if col == "latency" else "left")
    for r in result.regions:
        table.add_row(
            Text(r.region), Text(r.provider),
            Text(r.outcome.value, style=OUTCOME_STYLE.get(r.outcome.value, "")),
            Text(f"{_onoff(r.before)} -> {_onoff(r.after)}"),
            Text(f"{r.latency_ms} ms"), safe_text(r.detail, 300),
        )
    print_table(table)


def _progress_hook(names: list[str]):  # type: ignore[no-untyped-def]
    """A live per-region line on stderr when it is a terminal; None otherwise."""
    if plain_stream(sys.stderr):
        return None, None
    console = err_console()
    if not console.is_terminal:
        return None, None
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                        console=console, transient=True)
    tasks = {n: progress.add_task(f"{n}: queued", total=1) for n in names}

    def hook(region: str, phase: str) -> None:
        progress.update(tasks[region], description=f"{region}: {phase}",
                        completed=1 if phase == "done" else 0)

    return progress, hook


@app.command(epilog="Example: agentfire kill --region all --yes --reason 'emailing wrong recipients'")
@handles_errors
def kill(
    ctx: typer.Context,
    region: str = typer.Option("all", "--region", "-r", help="'all' or NAME[,NAME...]"),
    undo: bool = typer.Option(False, "--undo", help="Turn the agent back on where this incident turned it off."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Change nothing; say what would happen."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    reason: str = typer.Option("", "--reason", help="Why (journaled, sent as the change comment)."),
    deadline: Optional[float] = typer.Option(
        None, "--deadline", metavar="SECONDS", min=0.1, max=3600,
        help="Overall deadline (default: kill.deadline_seconds, 20 s).",
    ),
    json_out: bool = typer.Option(False, "--json", help="JSON on stdout."),
) -> None:
    """Minute one: turn the agent's kill-switch flag off in every region at once, read it back,
    report per region. Exit 0 only when every targeted region is CONFIRMED or ALREADY_OFF."""
    from agentfire import killswitch

    st = state(ctx)
    rb = st.runbook(validated_before=True)  # fields only: no pydantic when it validated before
    names = rb.select_regions(region)
    killswitch.check_deadline(deadline, rb)  # before anything is asked, opened or journaled
    # a region whose token is unset is that region's AUTH row; the others are still killed
    as_json = want_json(ctx, json_out)

    if undo:
        if not st.incident:
            # the latest incident that turned a region off (not merely the latest with a kill)
            st.incident = killswitch.latest_incident_to_undo(rb.journal_dir)
            line = f"undo: incident {st.incident} (the latest that turned a region off)"
            err_line(lambda: Text(line), line)
        journal = st.journal_to_restore("kill", "undo")
        verb = "turn the agent back ON"
    else:
        journal = None
        verb = "turn the agent OFF"
    if not dry_run and not yes and interactive():
        if not confirm(f"{verb} in {', '.join(names)} ({rb.agent.flag})?"):
            raise fail("not confirmed; nothing changed", 1)
    if journal is None:
        journal = st.journal(create=not dry_run)
        if journal is None:  # dry run without an incident: nothing is journaled
            from agentfire.journal import Journal

            journal = Journal(rb.journal_dir, "dry-run")

    progress, hook = _progress_hook(names) if not as_json else (None, None)
    fn = killswitch.undo if undo else killswitch.kill
    if progress is not None:
        with progress:
            result = fn(rb, journal, region_spec=region, actor=st.actor, reason=reason,
                        dry_run=dry_run, deadline_s=deadline, hook=hook)
    else:
        result = fn(rb, journal, region_spec=region, actor=st.actor, reason=reason,
                    dry_run=dry_run, deadline_s=deadline)

    if as_json:
        emit_json(result.to_json())
    else:
        render_flip(result)
        if not dry_run and (line := killswitch.agents_see_line(result.regions)):
            err_line(lambda: Text(line), line)
        fb = result.fallback
        # only where the read-back says the agent is off: never after a dry run or a failed kill
        off = [r.region for r in result.regions if r.outcome.value in ("CONFIRMED", "ALREADY_OFF")]
        if fb and fb.get("approved") and not undo and not dry_run and off:
            line = (f"users in {', '.join(off)} now see the approved fallback {fb['path']} "
                    f"(approved by {fb['approved_by']} on {fb['approved_on']})")
            err_line(lambda: Text(line), line)
    for w in result.warnings:
        warn(w)
    if result.journal_error:
        raise fail(f"the journal could not be written: {result.journal_error}", 1)
    if undo and not dry_run:
        st.amend_closed(journal)
    if result.interrupted:
        stopped = [r.region for r in result.regions if r.outcome.value == "INTERRUPTED"]
        raise fail(f"interrupted: {', '.join(stopped) or 'no region'} not finished; what finished is "
                   f"reported above and journaled in incident {result.incident}", 130)
    if undo:
        if not result.all_restored:
            if result.live:
                off_now = [n for n, on in result.live.items() if on is not True]
                if off_now:
                    warn(f"not restored: a live read shows {', '.join(off_now)} not on")
            raise typer.Exit(1)
        return
    if dry_run:
        bad = [f"{r.region}={r.outcome.value}" for r in result.regions
               if r.outcome.value not in ("DRY_RUN", "ALREADY_OFF")]
        if bad:
            raise fail(f"dry run: cannot say what a kill would do in {', '.join(bad)}", 1)
        return
    if not result.all_off:
        bad = [f"{r.region}={r.outcome.value}" for r in result.regions if not r.outcome.ok]
        if not as_json:
            next_steps((command_for(ctx, "status"), "read every region again"),
                       (command_for(ctx, "kill", "--region", ",".join(r.region for r in result.regions
                                                                      if not r.outcome.ok), "--yes"),
                        "retry the regions not confirmed"))
        raise fail(f"the agent is NOT confirmed off everywhere: {', '.join(bad)}", 1)
    if not as_json:
        next_steps((command_for(ctx, "freeze", "--to", "p50"), "minute two: cap the spend"),
                   (command_for(ctx, "kill", "--undo"), "once the fix is out: turn it back on"))


def region_status_json(rb: Any, rows: list[Any]) -> dict[str, Any]:
    return {
        "flag": rb.agent.flag,
        "regions": [{"region": s.region, "provider": s.provider, "on": s.on, "detail": s.detail}
                    for s in rows],
    }


_STATUS_LABEL = {True: ("ON", "bold yellow"), False: ("off", "green"), None: ("UNKNOWN", "bold red")}


def render_status(rb: Any, rows: list[Any]) -> None:
    if is_plain():  # piped: print_table's tab-separated rows, without Rich
        write_rows([[s.region, s.provider, _STATUS_LABEL[s.on][0], safe_str(s.detail, 300)] for s in rows])
        return
    table = Table(title=f"kill switch: {rb.agent.flag}", title_justify="left")
    for col in ("region", "provider", "agent", "detail"):
        table.add_column(col)
    for s in rows:
        label, style = {True: ("ON", "bold yellow"), False: ("off", "green"), None: ("UNKNOWN", "bold red")}[s.on]
        table.add_row(Text(s.region), Text(s.provider), Text(label, style=style), safe_text(s.detail, 300))
    print_table(table)


@app.command(epilog="Example: agentfire status --json | jq '.regions[] | select(.on != false)'")
@handles_errors
def status(
    ctx: typer.Context,
    region: str = typer.Option("all", "--region", "-r", help="'all' or NAME[,NAME...]"),
    json_out: bool = typer.Option(False, "--json", help="JSON on stdout."),
) -> None:
    """Read the kill-switch flag live in every region: did it really flip everywhere?
    Exit 0 when every region (and the spend caps) could be read, 1 when any could not."""
    from agentfire import killswitch

    st = state(ctx)
    rb = st.runbook(validated_before=True)  # fields only: no pydantic when it validated before
    rows = killswitch.status(rb, region_spec=region)
    doc = region_status_json(rb, rows)
    extra = _status_extras(rb)
    if want_json(ctx, json_out):
        emit_json({**doc, **extra})
    else:
        render_status(rb, rows)
        _render_status_extras(extra)
    # an unreadable section (the budget store down) is as much "not read" as a region
    if any(s.on is None for s in rows) or any(isinstance(v, dict) and "error" in v for v in extra.values()):
        raise typer.Exit(1)


# Other minutes add their live state to `status` (e.g. spend caps) by appending here:
# each provider is (name, fn(runbook) -> json-able dict or None, render(dict) -> None).
STATUS_EXTRAS: list[tuple[str, Any, Any]] = []


def _status_extras(rb: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, fn, _render in STATUS_EXTRAS:
        try:
            value = fn(rb)
        except Exception as exc:  # one unreadable section must not hide the kill switch
            value = {"error": f"{type(exc).__name__}: {exc}"}
        if value is not None:
            out[name] = value
    return out


def _render_status_extras(extra: dict[str, Any]) -> None:
    for name, _fn, render in STATUS_EXTRAS:
        if name in extra:
            render(extra[name])
