"""`agentfire freeze` and `freeze --lift`: minute two; the spend caps in `agentfire status`."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Optional

import typer

from agentfire.cli._lazyrich import Table, Text  # Rich only when made: `status --json` needs none

from agentfire.cli._app import (
    app, confirm, emit_json, err_console, fail, handles_errors, interactive, out_console,
    safe_text, state, want_json, warn,
)
from agentfire.cli._output import command_for, next_steps, print_table
from agentfire.cli.kill import STATUS_EXTRAS


def _usd(v: Any) -> str:
    return "-" if v is None else f"${float(v):,.4f}"


def _state(d: dict[str, Any] | None) -> str:
    if not d:
        return "?"
    return f"freeze {_usd(d.get('freeze_usd'))}  hard {_usd(d.get('hard_usd'))}  admission {d.get('admission')}"


def render_change(doc: dict[str, Any], *, plan: bool = False) -> None:
    console = out_console()
    dist = doc.get("distribution")
    if dist:
        t = Table(title=Text(f"cost per trajectory, {dist['source']} ({dist['start']} .. {dist['end']})"),
                  title_justify="left")
        for col in ("n", "p50", "p75", "p90", "max", "running", "running over new cap"):
            t.add_column(col, justify="right")
        t.add_row(str(dist["n"]), _usd(dist["p50"]), _usd(dist["p75"]), _usd(dist["p90"]),
                  _usd(dist["max"]), str(dist["running"]), str(doc["in_flight_over_cap"]))
        print_table(t)
        for row in doc["in_flight_over_cap_ids"]:
            console.print(Text("  over cap, still running: ") + safe_text(row["trace_id"], 80)
                          + Text(f"  {_usd(row['cost_usd'])}"))
    title = f"{doc['action']}: scope {doc['scope']}  ({doc['store']}, incident {doc['incident']})"
    if plan:
        title = f"plan: {doc['action']} scope {doc['scope']}  ({doc['store']})  [nothing changed yet]"
    elif doc["dry_run"]:
        title += "  [dry run: nothing changed]"
    t = Table(title=Text(title), title_justify="left")  # Text: no markup from names
    for col in ("", "freeze", "hard", "admission", "expires", "version"):
        t.add_column(col)
    for label, d in (("before", doc["before"]), ("wanted", doc["wanted"]), ("read back", doc["after"])):
        if d is None:
            continue
        t.add_row(label, _usd(d.get("freeze_usd")), _usd(d.get("hard_usd")), d.get("admission", "?"),
                  d.get("expires_at") or "-", str(d.get("version")))
    print_table(t)
    if plan:
        return
    style = {"CONFIRMED": "bold green", "DRY_RUN": "cyan"}.get(doc["outcome"], "bold red")
    line = Text(doc["outcome"], style=style)
    if doc["level"] and doc["action"] == "freeze":
        line += Text(f"  (freeze cap = {doc['level']})")
    err_console().print(line)


def _spinner(what: str, as_json: bool):  # type: ignore[no-untyped-def]
    console = err_console()
    if as_json or not console.is_terminal:
        return nullcontext()
    return console.status(what)


@app.command(epilog=(
    "Example: agentfire freeze --to p50 --window 1h --for 4h --reason 'runaway retry loop'\n\n"
    "Then: agentfire freeze --lift (restores what this incident's first freeze found)."
))
@handles_errors
def freeze(
    ctx: typer.Context,
    to: str = typer.Option("p50", "--to", metavar="p50|p75|p90|p95|p99|USD",
                           help="Freeze cap: a percentile of per-trajectory cost in the window "
                                "(p50, p75, p90, p95 or p99), or a USD amount (0.40 or $0.40)."),
    window: str = typer.Option("1h", "--window", metavar="DURATION", help="Cost window (90s, 30m, 1h, 2d)."),
    scope: Optional[str] = typer.Option(None, "--scope", metavar="NAME",
                                        help="Caps scope (default: the agent's name in runbook.yaml)."),
    refuse_new: bool = typer.Option(True, "--refuse-new/--allow-new",
                                    help="Set admission frozen (default) or leave new trajectories open."),
    hard: Optional[float] = typer.Option(None, "--hard", metavar="USD", min=0,
                                         help="Also set the hard cap (default: keep the current one)."),
    for_: Optional[str] = typer.Option(None, "--for", metavar="DURATION",
                                       help="Lift automatically after this long (4h); status says when."),
    lift_: bool = typer.Option(False, "--lift", help="Restore the caps this incident's first freeze found."),
    force: bool = typer.Option(False, "--force", help="--lift even if someone changed the caps since."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Compute and show; write nothing."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    reason: str = typer.Option("", "--reason", help="Why (journaled)."),
    json_out: bool = typer.Option(False, "--json", help="JSON on stdout."),
) -> None:
    """Minute two: cap spend. Sets the scope's freeze cap to a percentile of recent
    per-trajectory cost (runaway trajectories get no further model call) and refuses new
    trajectories, reads the store back and journals before and after. Exit 0 only when the
    read-back matches; 1 when not done (store down, version conflict); 2 on bad input."""
    from agentfire import budget
    from agentfire.journal import Journal

    st = state(ctx)
    rb = st.runbook()
    as_json = want_json(ctx, json_out)
    if lift_:
        journal = st.journal_to_restore("freeze", "lift")
        if not dry_run and not yes and interactive():
            if not confirm(f"lift the freeze on scope {scope or rb.agent.name}?"):
                raise fail("not confirmed; nothing changed", 1)
        change = budget.lift(rb, journal, actor=st.actor, scope=scope, force=force, dry_run=dry_run)
    else:
        window_s = budget.parse_duration(window, "--window")
        for_s = budget.parse_duration(for_, "--for") if for_ else None
        budget.parse_level(to)  # bad --to is a usage error before anything is read
        if not dry_run and not yes and interactive():
            # the plan first (level, distribution, in flight over the new cap), then the question
            with _spinner("reading trace costs and the budget store...", as_json):
                planned = budget.freeze(
                    rb, Journal(rb.journal_dir, "dry-run"), actor=st.actor, scope=scope, to=to,
                    window_s=window_s, refuse_new=refuse_new, hard_usd=hard, for_s=for_s,
                    dry_run=True, reason=reason)
            plan_doc = planned.to_json()
            render_change(plan_doc, plan=True)
            for w in planned.warnings:
                warn(w)
            what = "refuse new trajectories and " if refuse_new else ""
            cap = (plan_doc.get("wanted") or {}).get("freeze_usd")
            at = f"{_usd(cap)} ({plan_doc['level']})" if plan_doc.get("level") not in (None, "usd") else _usd(cap)
            if not confirm(f"{what}freeze spend at {at} on scope {plan_doc['scope']}?"):
                raise fail("not confirmed; nothing changed", 1)
        journal = st.journal(create=not dry_run) or Journal(rb.journal_dir, "dry-run")
        with _spinner("reading trace costs and the budget store...", as_json):
            change = budget.freeze(
                rb, journal, actor=st.actor, scope=scope, to=to, window_s=window_s,
                refuse_new=refuse_new, hard_usd=hard, for_s=for_s, dry_run=dry_run, reason=reason,
            )
    doc = change.to_json()
    if as_json:
        emit_json(doc)
    else:
        render_change(doc)
    for w in change.warnings:
        warn(w)
    if change.journal_error:
        raise fail(f"the journal could not be written: {change.journal_error}", 1)
    if lift_ and not dry_run:
        st.amend_closed(journal)
    if not dry_run and not change.confirmed:
        raise fail(f"{change.action} of scope {change.scope!r} is NOT confirmed: the read-back differs "
                   "from what was written (see 'read back')", 1)
    if not as_json and not dry_run and not lift_:
        next_steps((command_for(ctx, "traces", "--errors", "--since", "1h"),
                    "minute three: find the failing run (or use the alert's trace id)"),
                   (command_for(ctx, "triage", "TRACE_ID"), "walk it backwards"),
                   (command_for(ctx, "freeze", "--lift"), "once the fix is out: restore the caps"))


# --- the caps in `agentfire status` -----------------------------------------------------------


def _status_caps(rb: Any) -> dict[str, Any]:
    from agentfire import budget

    return budget.status(rb)


def _render_caps(doc: dict[str, Any]) -> None:
    from agentfire.cli._app import err_line, safe_str
    from agentfire.cli._output import is_plain, write_rows

    if "error" in doc and "scopes" not in doc:
        err_line(lambda: Text("spend caps: ", style="bold") + Text(doc["error"], style="bold red"),
                 "spend caps: " + doc["error"])
        return
    if is_plain():  # piped: the table's rows, written without Rich (print_table's piped rows)
        rows = [[safe_str(s["scope"], 80), "UNREADABLE", safe_str(s["error"], 300), "", "", "", ""]
                if "error" in s else
                [safe_str(s["scope"], 80), s["effective"]["admission"], _usd(s["effective"]["freeze_usd"]),
                 _usd(s["effective"]["hard_usd"]), _expires(s), str(s["version"]),
                 safe_str(s["updated_by"] or "-", 60)] for s in doc["scopes"]]
        if not any("[" in c for row in rows for c in row):  # a str cell with [ is Rich markup
            write_rows(rows)
            _render_missing_freezes(doc)
            return
    t = Table(title=Text(f"spend caps: {doc['store']}"), title_justify="left")
    for col in ("scope", "admission", "freeze", "hard", "expires (then)", "version", "set by"):
        t.add_column(col)
    for s in doc["scopes"]:
        if "error" in s:
            t.add_row(safe_text(s["scope"], 80), Text("UNREADABLE", style="bold red"), safe_text(s["error"], 300),
                      "", "", "", "")
            continue
        eff = s["effective"]
        adm = Text(eff["admission"], style="bold yellow" if eff["admission"] == "frozen" else "green")
        t.add_row(safe_text(s["scope"], 80), adm, _usd(eff["freeze_usd"]), _usd(eff["hard_usd"]),
                  _expires(s), str(s["version"]), safe_text(s["updated_by"] or "-", 60))
    print_table(t)
    _render_missing_freezes(doc)


def _expires(s: dict[str, Any]) -> str:
    if s["expires_at"]:
        then = "expired: " if s["expired"] else ""
        return f"{then}{s['expires_at']} ({_state(s['prior']) if s['prior'] else 'open, no caps'})"
    return "-"


def _render_missing_freezes(doc: dict[str, Any]) -> None:
    from agentfire.cli._app import err_line

    for f in doc.get("missing_freezes", []):
        line = (f"FREEZE GONE: scope {f['scope']!r}: incident {f['incident']} froze it at {f['set_at']} "
                f"(version {f['version']}) and has not lifted it, but the store no longer holds it "
                f"(restarted without persistence?); re-run `agentfire --incident {f['incident']} freeze` "
                "to set it again")
        err_line(lambda: Text(line, style="bold red"), line)


STATUS_EXTRAS.append(("budget", _status_caps, _render_caps))
