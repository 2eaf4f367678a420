"""Shared CLI plumbing: global state, output, error mapping. The only place besides the command
modules that imports typer or rich.

Output rules: data on stdout (a Rich table for people, JSON with --json), summaries, warnings and
progress on stderr; colour only on a terminal and never with NO_COLOR (Rich honours both); trace
content rendered through rich.text.Text so markup in it stays text.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

import typer

from agentfire.cli._lazyrich import Text
from agentfire.errors import EXIT_NOT_DONE, EXIT_USAGE, AgentfireError

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="agentfire",
    help=(
        "The first five minutes of an LLM-agent incident, one command each:\n\n"
        "kill (minute 1) -> freeze (2) -> triage (3) -> blast (4) -> capture (5);\n"
        "runbook walks them in order, timed; gameday rehearses them against a scored failure.\n\n"
        "Example: agentfire kill --region all --reason 'agent emailing wrong recipients'"
    ),
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@dataclass
class AppState:
    config: str | None = None
    incident: str | None = None
    actor: str = ""
    json: bool = False
    new: bool = False
    reopen: bool = False
    _runbook: Any = field(default=None, repr=False)

    def runbook(self, *, validated_before: bool = False) -> Any:
        """The runbook; `validated_before=True` for commands that read only its fields (status,
        kill): from the cache of runbooks that validated, without pydantic (agentfire.runbook)."""
        if self._runbook is None:
            if validated_before:
                from agentfire.runbook import load_runbook_validated_before as load_runbook
            else:
                from agentfire.config import load_runbook

            self._runbook = load_runbook(self.config)
            if self.incident and not self.new:
                # a drill's commands (the walk runs them with its incident) see only what the
                # runbook's gameday: section lets drills touch
                from agentfire.journal import INCIDENT_ID, Journal, is_drill

                if INCIDENT_ID.match(self.incident) and is_drill(
                        Journal(self._runbook.journal_dir, self.incident)):
                    self._runbook = self._runbook.for_drill()
        return self._runbook

    def journal(self, *, create: bool, allow_closed: bool = False) -> Any:
        """The journal of --incident; with create=True and no --incident, a new incident.

        Nothing is written here: a new incident is announced (and exists) only when its first
        entry is written, so a command that fails validation opens nothing. An --incident with no
        journal is an error unless --new (a typo must not split an incident in two), and a closed
        incident takes new actions only with --reopen, journaled (undo and lift are allowed:
        `incident close` offers them)."""
        from agentfire.errors import UsageError
        from agentfire.journal import Journal, check_incident_id, closed_entry, new_incident_id

        rb = self.runbook()
        if self.incident:
            inc = check_incident_id(self.incident)
            journal = Journal(rb.journal_dir, inc)
            if self.new:
                if journal.exists():
                    raise UsageError(f"--new: incident {inc!r} already exists in {rb.journal_dir}; "
                                     "leave out --new to act in it, or choose another id")
                return Journal(rb.journal_dir, inc, before_first_append=self._announce)
            if not journal.exists():
                raise UsageError(
                    f"no incident {inc!r} in {rb.journal_dir}{self._origin(inc)}: check the id "
                    "(agentfire incident list), or pass --new to open an incident with this id")
            closed = closed_entry(journal.entries())
            if closed is not None and not allow_closed:
                if not self.reopen:
                    raise UsageError(
                        f"incident {inc} was closed at {closed.get('ts')} by {closed.get('actor')}: "
                        "pass --reopen to act in it again (journaled), or leave out --incident to "
                        "open a new one")
                return Journal(rb.journal_dir, inc, before_first_append=self._reopened)
            return journal
        if not create and not self.new:
            return None
        self.incident = new_incident_id()
        return Journal(rb.journal_dir, self.incident, before_first_append=self._announce)

    @staticmethod
    def _origin(incident: str) -> str:
        return (" (from $AGENTFIRE_INCIDENT: unset it, or export the right id)"
                if os.environ.get("AGENTFIRE_INCIDENT") == incident else "")

    def _announce(self, journal: Any) -> None:
        err_line(lambda: Text.assemble(
            "opened incident ", (journal.incident, "bold"),
            f"  (export AGENTFIRE_INCIDENT={journal.incident} to keep using it)"),
            f"opened incident {journal.incident}  (export AGENTFIRE_INCIDENT={journal.incident} to keep using it)")

    def _reopened(self, journal: Any) -> None:
        journal.append("incident.reopen", actor=self.actor, outcome="REOPENED",
                       before={"status": "closed"}, after={"status": "open"})
        err_line(lambda: Text.assemble("reopened incident ", (journal.incident, "bold")),
                 f"reopened incident {journal.incident}")

    def journal_to_restore(self, action: str, what: str) -> Any:
        """The journal of --incident, else of the latest incident with `action` (said aloud),
        for --undo / --lift: they restore from a journaled "before"."""
        if not self.incident:
            from agentfire.journal import latest_incident_with

            latest = latest_incident_with(self.runbook().journal_dir, action)
            if latest is None:
                raise fail(f"no incident has a {action} to {what}; pass --incident ID", EXIT_USAGE)
            self.incident = latest
            line = f"{what}: incident {latest} (the latest with a {action})"
            err_line(lambda: Text(line), line)
        return self.journal(create=False, allow_closed=True)

    def amend_closed(self, journal: Any) -> None:
        """After an undo or lift: a closed incident's report gets it (incident close offered it)."""
        from agentfire.incident import amend_closed_report, report_paths

        if amend_closed_report(journal):
            line = f"added to the closed incident's report {report_paths(journal)[0]}"
            err_line(lambda: Text(line), line)


def state(ctx: typer.Context) -> AppState:
    obj = ctx.find_root().obj
    if not isinstance(obj, AppState):
        obj = AppState()
        ctx.find_root().obj = obj
    return obj


_consoles: dict[str, Any] = {}


def out_console() -> Any:
    from rich.console import Console

    c = _consoles.get("out")
    if c is None or c.file is not sys.stdout:
        # piped into a file or `tee`, Rich would cut tables at 80 columns and lose the detail column
        width = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 200
        c = _consoles["out"] = Console(file=sys.stdout, highlight=False, soft_wrap=False, width=width)
    return c


def err_console() -> Any:
    from rich.console import Console

    c = _consoles.get("err")
    if c is None or c.file is not sys.stderr:
        # soft_wrap: an error or warning stays one line (greppable) whatever the width
        c = _consoles["err"] = Console(file=sys.stderr, highlight=False, soft_wrap=True)
    return c


def plain_stream(stream: Any) -> bool:
    """Rich would write `stream` as plain text: not a terminal, and no colour forced
    (TTY_COMPATIBLE, FORCE_COLOR: Rich's own rules, Console.is_terminal)."""
    env = os.environ
    tty_compatible = env.get("TTY_COMPATIBLE", "")
    if tty_compatible in ("0", "1"):
        return tty_compatible == "0"
    force_color = env.get("FORCE_COLOR")
    if force_color is not None:
        return force_color == ""
    try:
        return not stream.isatty()
    except (AttributeError, ValueError):
        return True


# what rich.text.Text removes from any text it holds (rich.control.strip_control_codes)
_RICH_STRIPS = {7: None, 8: None, 11: None, 12: None, 13: None}


def err_line(make: Callable[[], Any], plain: str) -> None:
    """One line on stderr: the Rich Text `make()` makes, through err_console(); when stderr is
    plain (piped, a file) its characters `plain` written directly, as Rich would write them, and
    Rich never imported. A tab falls back to Rich (it expands tabs by cell width)."""
    if "\t" not in plain and plain_stream(sys.stderr):
        sys.stderr.write(plain.translate(_RICH_STRIPS) + "\n")
        sys.stderr.flush()
        return
    err_console().print(make())


def emit_json(doc: Any) -> None:
    from agentfire.secrets import redact_obj

    # indented for a person at a terminal; compact for scripts, where the C encoder is 3x faster
    # (json.dumps with indent falls back to the pure-Python encoder: 0.4 s on a 5,000-step triage)
    indent = 2 if sys.stdout.isatty() else None
    sys.stdout.write(json.dumps(redact_obj(doc), ensure_ascii=False, indent=indent, default=str) + "\n")
    sys.stdout.flush()


def write_out(out: Any, doc: Any, markdown: str) -> None:
    """--out FILE: the JSON document for *.json, else the markdown; atomic; said on stderr."""
    from agentfire._files import atomic_write
    from agentfire.secrets import redact, redact_obj

    if str(out).endswith(".json"):
        data = json.dumps(redact_obj(doc), indent=2, ensure_ascii=False, default=str) + "\n"
    else:
        data = redact(markdown)
    atomic_write(out, data.encode("utf-8"))
    err_line(lambda: Text(f"wrote {out}"), f"wrote {out}")


def warn(message: str) -> None:
    from agentfire.secrets import redact

    text = redact(message)
    err_line(lambda: Text(text, style="bold yellow"), text)


def fail(message: str, code: int = EXIT_NOT_DONE) -> typer.Exit:
    from agentfire.secrets import redact

    text = redact(message)
    err_line(lambda: Text("agentfire: error: ", style="bold red") + Text(text), "agentfire: error: " + text)
    return typer.Exit(code)


def handles_errors(fn: F) -> F:
    """AgentfireError -> one clear line and its exit code; OSError -> one line, exit 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AgentfireError as exc:
            raise fail(str(exc), exc.exit_code) from None
        except PermissionError as exc:
            raise fail(f"{exc.filename}: permission denied" if exc.filename else f"permission denied: {exc}",
                       EXIT_NOT_DONE) from None
        except OSError as exc:
            # no filename (an overflow, a socket): no empty ": " prefix
            raise fail(f"{exc.filename}: {exc.strerror or exc}" if exc.filename else str(exc.strerror or exc),
                       EXIT_NOT_DONE) from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None

    return wrapper  # type: ignore[return-value]


def interactive() -> bool:
    """A person is at a terminal (so we may ask)."""
    return sys.stdin.isatty() and sys.stdout.isatty() and not os.environ.get("CI")


def confirm(question: str) -> bool:
    return typer.confirm(question, default=False, err=True)


def want_json(ctx: typer.Context, local: bool) -> bool:
    return local or state(ctx).json


def safe_text(value: object, limit: int | None = 2000, style: str = "") -> Text:
    """Untrusted content as an inert Rich Text (no markup, escapes visible, cut)."""
    from agentfire.secrets import redact
    from agentfire.textsafe import safe

    # redacted here too: a server's error text (a token it echoed) reaches tables through this
    return Text(safe_str(value, limit), style=style)


def safe_str(value: object, limit: int | None = 2000) -> str:
    """safe_text's characters, as a str (for plain output written without Rich)."""
    from agentfire.secrets import redact
    from agentfire.textsafe import safe

    return redact(safe(redact(value) if isinstance(value, str) else value, limit))


__all__ = ["app", "AppState", "state", "handles_errors", "emit_json", "warn", "fail",
           "out_console", "err_console", "err_line", "plain_stream", "safe_str", "interactive", "confirm", "want_json", "safe_text",
           "EXIT_USAGE", "EXIT_NOT_DONE"]


# --- help: one metavar style ------------------------------------------------------------------

_METAVAR_BY_NAME = {
    "trace": "TRACE_ID", "trace_id": "TRACE_ID", "incident": "INCIDENT", "scenario": "SCENARIO",
    "actor": "NAME", "region": "all|NAME[,NAME...]", "reason": "TEXT", "answers": "FILE.yaml",
    "out": "FILE", "target": "sandbox|staging", "class_name": "CLASS", "level": "LEVEL",
    "mode": "MODE", "args_mode": "MODE", "seed": "N", "traces": "N", "step_timeout": "SECONDS",
}


def tidy_metavars(typer_app: Any) -> None:
    """Every parameter gets an upper-case metavar (TRACE_ID, INCIDENT, N, SECONDS, FILE) instead
    of Click's internals (`<int range>`, `<str>`, `{trace_id}`); explicit metavars are kept. And
    values complete in the shell by parameter name (regions, scenarios, incidents, golden
    classes, trace ids: agentfire.cli._complete)."""
    import inspect

    from agentfire.cli._complete import BY_NAME as COMPLETERS

    def fix(callback: Any) -> None:
        if callback is None:
            return
        for name, p in inspect.signature(callback).parameters.items():
            info = p.default
            if type(info).__name__ not in ("OptionInfo", "ArgumentInfo"):
                continue
            if name in COMPLETERS and not info.autocompletion and not info.shell_complete:
                info.autocompletion = COMPLETERS[name]
            if getattr(info, "metavar", None):
                continue
            ann = str(p.annotation)
            if "bool" in ann:
                continue
            meta = _METAVAR_BY_NAME.get(name)
            if meta is None:
                if "int" in ann:
                    meta = "N"
                elif "float" in ann:
                    meta = "SECONDS" if "timeout" in name or "deadline" in name else "NUMBER"
                elif "Path" in ann:
                    meta = "FILE"
                else:
                    meta = name.upper()
            info.metavar = meta

    def walk(t: Any) -> None:
        for c in t.registered_commands:
            fix(c.callback)
        if t.registered_callback is not None:
            fix(t.registered_callback.callback)
        for g in t.registered_groups:
            if g.typer_instance is not None:
                walk(g.typer_instance)

    walk(typer_app)


def _argument_help_without_type() -> None:
    """An argument with a metavar (TRACE_ID, INCIDENT) is shown as that, not `TRACE_ID <str>`."""
    import typer.core as tc

    cls = getattr(tc, "TyperArgument", None)
    original = getattr(cls, "display_type_rich", None)
    if cls is None or original is None or getattr(original, "_agentfire", False):
        return

    def display_type_rich(self: Any, ctx: Any) -> Any:
        return None if self.metavar else original(self, ctx)

    display_type_rich._agentfire = True  # type: ignore[attr-defined]
    cls.display_type_rich = display_type_rich


_argument_help_without_type()


def _usage_without_braces() -> None:
    """A required argument reads `agentfire triage [OPTIONS] TRACE_ID` in the usage line, as in
    man pages and Click, not typer 0.29's `{TRACE_ID}` (which looks like a template to fill)."""
    import typer.core as tc

    cls = getattr(tc, "TyperArgument", None)
    original = getattr(cls, "_usage_display_name", None)
    if cls is None or original is None or getattr(original, "_agentfire", False):
        return

    def _usage_display_name(self: Any) -> str:
        name = original(self)
        if self.required and name.startswith("{"):
            name = name[1:].replace("}", "", 1)
        return name

    _usage_display_name._agentfire = True  # type: ignore[attr-defined]
    cls._usage_display_name = _usage_display_name


_usage_without_braces()


def _typer_coercion_when_needed() -> None:
    """typer builds a pydantic TypeAdapter for each parameter it processes, even one whose value
    is None (`--config` not given) and then never used, so every command imports pydantic and
    builds adapters: 50-60 ms of each start. Here the adapter is built when a value needs it:
    None (and the empty multi-value) is answered by typer's own RuntimeParam.coerce before any
    adapter, and a `str` value of a plain `str` parameter (no parser, not a file) is returned as
    it is, which is what typer's adapter does with it (its `_parse_cli_str`, then str
    validation), and so are the str values of a `list[str]` option, as a list (blast --arg: 60-85 ms
    of its start). Everything else (numbers, paths, choices) is coerced by typer itself."""
    import typer.core as tc

    cls = getattr(tc, "_TyperParameter", None)
    original = getattr(cls, "get_runtime_param", None)
    if cls is None or original is None or getattr(original, "_agentfire", False):
        return
    try:
        from typer._coercion import RuntimeParam, build_runtime_param
    except ImportError:  # another typer: leave it alone
        return

    @dataclass(frozen=True)
    class WhenNeeded(RuntimeParam):  # type: ignore[misc]
        descriptor: Any = None

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            d = self.descriptor
            if (type(value) is str and d.annotation is str and d.file_annotation is None
                    and getattr(d.parameter_info, "parser", None) is None):
                return value
            if (d.annotation == list[str] and isinstance(value, (list, tuple)) and d.file_annotation is None
                    and getattr(d.parameter_info, "parser", None) is None
                    and all(type(v) is str for v in value)):
                return list(value)  # a repeatable str option (blast --arg): the list typer's adapter makes
            real = param._runtime_param = build_runtime_param(d)
            return real._coerce_value(value, param=param, ctx=ctx)

    def get_runtime_param(self: Any) -> Any:
        desc = getattr(self, "type_descriptor", None)
        if getattr(self, "_runtime_param", None) is None and desc is not None:
            self._runtime_param = WhenNeeded(parameter_info=desc.parameter_info,
                                             annotation=desc.annotation, descriptor=desc)
        return original(self)

    get_runtime_param._agentfire = True  # type: ignore[attr-defined]
    cls.get_runtime_param = get_runtime_param


_typer_coercion_when_needed()
