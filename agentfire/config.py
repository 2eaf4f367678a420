"""runbook.yaml: typed, strict, validated configuration.

Every error names the file, the line, the field and what would be valid. Unknown keys are errors
(a typo in a kill-switch configuration must never be silently ignored). Secrets are named by
environment variable only; `resolve_env` reads them at the moment a provider needs them.

Provider sections (regions, budget, traces) are validated against the model that the provider
registry names for their `kind`, so a third-party provider brings its own schema.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agentfire.errors import ConfigError

# the validated Runbook, and finding runbook.yaml, live in agentfire.runbook (no pydantic there:
# `status` and `kill` read a runbook validated before without importing it)
from agentfire.runbook import CONFIG_ENV, CONFIG_FILENAME, Runbook, find_config  # noqa: E402,F401


class Strict(BaseModel):
    # allow_inf_nan=False: an infinite or NaN timeout, deadline or threshold is an error, not a hang
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True, allow_inf_nan=False)


# --- flag providers (one per region) -----------------------------------------------------------


class OpenFeatureProviderSpec(Strict):
    """Any OpenFeature provider, named by import path or entry point: what agents evaluate with."""

    provider: str = Field(
        description="'package.module:Factory' (a provider class or a callable returning one), or the "
        "name of an entry point in the 'openfeature.provider' group"
    )
    options: dict[str, Any] = Field(default_factory=dict, description="keyword arguments for the factory")
    options_env: dict[str, str] = Field(
        default_factory=dict, description="keyword arguments whose values come from env variables (keys, tokens)"
    )
    propagation: str | None = Field(
        default=None, description="how fast agents see a change, said in kill's output (e.g. 'polls every 60 s')"
    )
    propagation_seconds: float | None = Field(default=None, ge=0)


class AgentSide(Strict):
    """What agent processes (agentfire.guard) evaluate the flag with. Never an admin or write token."""

    agent_context: dict[str, Any] = Field(
        default_factory=dict,
        description="evaluation context of a typical agent request (targetingKey and attributes); "
        "kill's read-back and doctor evaluate the flag for it (default targetingKey: the agent's name)",
    )
    openfeature_provider: OpenFeatureProviderSpec | None = Field(
        default=None, description="evaluate through this OpenFeature provider instead of the built-in one"
    )
    init_timeout_seconds: float = Field(
        default=5.0, gt=0, le=300, description="bounded wait for the provider to be ready (agent off until then)"
    )
    max_stale_seconds: float | None = Field(
        default=None, ge=0, le=86400,
        description="how long agents keep serving the last known value after the source fails "
        "(default: 0 for flagd files, 30 for network sources); then off",
    )
    ca_file: str | None = Field(default=None, description="CA bundle (PEM) trusted for this provider's TLS")
    client_cert_file: str | None = Field(default=None, description="client certificate (PEM) for mTLS")
    client_key_file: str | None = Field(default=None, description="client key (PEM) for mTLS")


class FlagdRegion(AgentSide):
    kind: Literal["flagd"]
    path: str = Field(description="the flagd JSON file, relative to runbook.yaml")
    off_variant: str = "off"
    on_variant: str = "on"
    create: bool = Field(
        default=False, description="create the file with the agent on when it does not exist"
    )
    watch_interval_ms: int = Field(default=200, ge=10, le=60000, description="agents re-check the file this often")


class UnleashRegion(AgentSide):
    kind: Literal["unleash"]
    url: str
    project: str = "default"
    environment: str
    token_env: str = Field(description="env variable holding an admin API token")
    client_token_env: str | None = Field(
        default=None,
        description="env variable holding a backend (client) token of this environment: "
        "agent processes (agentfire.guard) read the flag through the client API with it",
    )
    timeout_seconds: float = Field(default=5.0, gt=0, le=300)
    refresh_interval_seconds: int = Field(default=15, ge=1, le=3600, description="agents' SDK poll interval")
    app_name: str | None = Field(default=None, description="the agents' Unleash appName (default: agent name)")


class LaunchDarklyRegion(AgentSide):
    kind: Literal["launchdarkly"]
    base_url: str = "https://app.launchdarkly.com"
    project: str
    environment: str
    token_env: str = "LD_ACCESS_TOKEN"
    timeout_seconds: float = Field(default=5.0, gt=0, le=300)
    sdk_key_env: str | None = Field(
        default=None, description="env variable holding this environment's SDK key (agents; read-only)"
    )
    stream: bool = Field(default=True, description="agents stream flag changes (False: poll)")
    poll_interval_seconds: float = Field(default=30.0, ge=30, le=3600, description="when not streaming")
    sdk_base_uri: str | None = Field(default=None, description="SDK polling base URI (Relay Proxy)")
    stream_uri: str | None = Field(default=None, description="SDK streaming URI (Relay Proxy)")
    events_uri: str | None = None
    send_events: bool = True


# --- budget stores ------------------------------------------------------------------------------


class SqliteBudget(Strict):
    kind: Literal["sqlite"]
    path: str = ".agentfire/budget.sqlite"


class RedisBudget(Strict):
    kind: Literal["redis"]
    url: str | None = None
    url_env: str | None = Field(default=None, description="env variable holding redis://...")
    key_prefix: str = "agentfire:budget:"
    timeout_seconds: float = Field(default=1.0, gt=0, le=300, description="connect/read timeout (agents fail closed after it)")


# --- trace stores -------------------------------------------------------------------------------


class FilesTraces(Strict):
    kind: Literal["files"]
    path: str = ".agentfire/traces"
    seed_scenario: str | None = Field(
        default="wrong_recipient",
        description="scenario seeded into an empty store on first use (null: never)",
    )


class LangfuseTraces(Strict):
    kind: Literal["langfuse"]
    base_url: str | None = None
    base_url_env: str = "LANGFUSE_BASE_URL"
    public_key_env: str = "LANGFUSE_PUBLIC_KEY"
    secret_key_env: str = "LANGFUSE_SECRET_KEY"
    environment: str | None = None
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    requests_per_minute: int | None = Field(
        default=None, gt=0, description="client-side pacing (Langfuse Cloud: 1000/min for v2 observations)"
    )
    ui_url: str | None = Field(default=None, description="the Langfuse UI for trace links (default: base_url)")
    project_id: str | None = Field(
        default=None, description="the Langfuse project id (Settings > General): trace ids printed with a UI link")


class PhoenixTraces(Strict):
    kind: Literal["phoenix"]
    url: str = "http://127.0.0.1:6006"
    project: str = "default"
    api_key_env: str | None = None
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    ui_url: str | None = Field(default=None, description="the Phoenix UI for trace links (default: url)")
    project_id: str | None = Field(
        default=None, description="Phoenix's id of the project for trace links (default: looked up by name)")


# --- the rest of the runbook ----------------------------------------------------------------


class AgentSection(Strict):
    name: str
    flag: str = Field(description="the kill-switch flag key")
    fallback: str | None = Field(
        default=None, description="approved fallback message (markdown), relative to runbook.yaml"
    )


class KillSection(Strict):
    deadline_seconds: float = Field(default=20.0, gt=0, le=3600)
    max_retries: int = Field(default=4, ge=0, le=20)
    retry_cap_seconds: float = Field(default=5.0, gt=0, le=300)


class EvalsSection(Strict):
    path: str = Field(default="evals/regressions.jsonl", description="the eval set (JSON lines)")
    langfuse_dataset: str | None = Field(
        default=None, description="dataset for capture --push (default: <agent>-regressions)"
    )
    phoenix_dataset: str | None = Field(
        default=None, description="Phoenix dataset for capture --push (default: langfuse_dataset's)"
    )
    verify: str | None = Field(
        default=None,
        description="test command `incident close` runs first, e.g. pytest -q tests/test_regressions.py",
    )


class GoldenSection(Strict):
    dir: str = "golden"


class JournalSection(Strict):
    dir: str = ".agentfire/incidents"


class GamedaySection(Strict):
    """What a drill may touch. A drill's commands see only these regions (`--region all` means
    them) and freeze this budget scope; its regression cases go to this eval set, never the real one."""

    regions: list[str] | None = Field(default=None, description="regions a drill may arm and kill (default: all)")
    scope: str | None = Field(default=None, description="budget scope a drill freezes (default: the agent's)")
    evals: str | None = Field(default=None, description="drill eval set (default: <evals.path>.gameday.jsonl)")


class TriageSection(Strict):
    """What the triage detectors treat as destructive, read-only, untrusted (names are globs)."""

    # tool-name globs and argument regexes that make a call destructive or irreversible
    destructive_tools: list[str] = Field(
        default_factory=lambda: [
            "send_*", "email_*", "forward_*", "delete_*", "drop_*", "refund*", "pay*",
            "transfer*", "wire*",
        ]
    )
    destructive_sql: str = r"\b(DELETE|DROP|TRUNCATE|ALTER)\b|\bUPDATE\b(?![\s\S]*\bWHERE\b)"
    production_markers: list[str] = Field(default_factory=lambda: ["prod", "production", "live"])
    read_tools: list[str] = Field(
        default_factory=lambda: ["search*", "read_*", "get_*", "lookup*", "list_*", "select*"]
    )
    # other state-changing tools (a "mutation" breaks a promise to verify first; the golden diff's
    # default mode compares these by name and arguments)
    mutation_tools: list[str] = Field(
        default_factory=lambda: [
            "update_*", "create_*", "insert_*", "set_*", "write_*", "cancel_*", "close_*",
            "modify_*", "book_*", "exchange_*", "return_*", "add_*", "remove_*", "edit_*",
            "submit_*", "place_*", "post_*", "upsert_*", "put_*",
        ]
    )
    # tools that hand the conversation to a person or another agent (OpenAI Agents SDK / Swarm
    # name them transfer_to_<agent>): not a state change, not a read
    handoff_tools: list[str] = Field(
        default_factory=lambda: ["transfer_to_*", "handoff*", "*_handoff", "hand_off*"]
    )
    # tools that neither read nor change state (calculators, scratchpads)
    pure_tools: list[str] = Field(
        default_factory=lambda: ["calculat*", "compute*", "think*", "math*", "scratchpad*"]
    )
    grounding: bool = Field(
        default=True,
        description="flag numbers, amounts, ids, dates and emails the model states or passes to a "
        "state-changing call that appear nowhere earlier",
    )
    # tools whose output is written by outsiders (emails, web pages, uploaded documents)
    untrusted_tools: list[str] = Field(
        default_factory=lambda: [
            "read_inbox", "read_email*", "read_document*", "read_attachment*", "fetch_*",
            "browse*", "search_web*", "web_*", "get_webpage*",
        ]
    )
    loop_min_repeats: int = Field(default=3, ge=2, description="identical calls that make a loop")
    max_input_output_ratio: float = Field(default=70.0, gt=1, description="context blow-up threshold")

    @field_validator("destructive_sql")
    @classmethod
    def _valid_regex(cls, value: str) -> str:
        import re

        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return value


class PolicyRule(Strict):
    """One declarative rule triage checks step by step (exactly one shape per rule):

    - `before: [globs]` with `require: [globs]`: no call matching `before` until a call matching
      `require` succeeded (e.g. authenticate before any change);
    - `require_confirmation: [globs]`: the user's turn just before such a call says yes;
    - `never: [globs]`: no such call at all;
    - `max_calls: {glob: N}`: at most N calls matching the glob.
    """

    name: str | None = None
    before: list[str] | None = None
    require: list[str] | None = None
    require_confirmation: list[str] | None = None
    never: list[str] | None = None
    max_calls: dict[str, int] | None = None
    severity: Literal["high", "medium", "low"] = "medium"

    @model_validator(mode="after")
    def _one_shape(self) -> "PolicyRule":
        shapes = [k for k in ("before", "require_confirmation", "never", "max_calls") if getattr(self, k) is not None]
        if len(shapes) != 1:
            raise ValueError("a policy rule has exactly one of before (with require), require_confirmation, "
                             f"never, max_calls (got {', '.join(shapes) or 'none'})")
        if (self.before is None) != (self.require is None):
            raise ValueError("before: and require: go together (before: [globs] require: [globs])")
        for key in ("before", "require", "require_confirmation", "never"):
            v = getattr(self, key)
            if v is not None and (not v or not all(isinstance(g, str) and g for g in v)):
                raise ValueError(f"{key}: needs a non-empty list of tool-name globs")
        if self.max_calls is not None:
            if not self.max_calls or any(n < 0 for n in self.max_calls.values()):
                raise ValueError("max_calls: maps tool-name globs to a number of calls >= 0")
        return self

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        if self.before is not None:
            return f"before {', '.join(self.before)} require {', '.join(self.require or [])}"
        if self.require_confirmation is not None:
            return f"require_confirmation {', '.join(self.require_confirmation)}"
        if self.never is not None:
            return f"never {', '.join(self.never)}"
        return "max_calls " + ", ".join(f"{g}: {n}" for g, n in (self.max_calls or {}).items())


class RunbookStep(Strict):
    id: str
    title: str
    command: str
    target_seconds: int = Field(gt=0)
    check: str = ""

    @field_validator("command")
    @classmethod
    def _template(cls, value: str) -> str:
        # caught here (file:line, doctor) rather than as a traceback mid-incident, after kill ran
        import string

        try:
            fields = [(name, conv, spec) for _, name, spec, conv in string.Formatter().parse(value)
                      if name is not None]
        except ValueError as exc:
            raise ValueError(f"not a valid command template ({exc}): use {{name}}, and {{{{ }}}} "
                             "for a literal brace") from None
        for name, conv, spec in fields:
            if not name.isidentifier() or conv or spec:
                raise ValueError(f"placeholder {{{name}{'!' + conv if conv else ''}{':' + spec if spec else ''}}}"
                                 " is not a plain {name}")
        return value


class ModelPrice(Strict):
    """USD per million tokens of one model, for trace stores that compute no cost themselves."""

    input_per_million: float = Field(ge=0)
    output_per_million: float = Field(ge=0)


# --- watch: findings -> pages (issue 16) ----------------------------------------------------------


class WatchRule(Strict):
    """Which findings page, at what count in what window, with what severity."""

    name: str | None = None
    kinds: list[str] = Field(default_factory=lambda: ["*"],
                             description="finding kinds (globs) this rule counts; '*' every kind")
    min_severity: Literal["high", "medium"] = Field(
        default="high", description="the verdict's severity at least this (medium counts high too)")
    threshold: int = Field(default=1, ge=1, le=100000,
                           description="trajectories with one signature within window_seconds that page")
    window_seconds: float = Field(default=600, gt=0, le=7 * 86400)
    severity: Literal["critical", "error", "warning", "info"] = Field(
        default="critical", description="the page's severity (PagerDuty's names)")


class WatchRoute(Strict):
    """Where alerts go. Secrets (webhook URLs, routing keys) by environment variable name only."""

    kind: Literal["alertmanager", "slack", "pagerduty", "webhook"]
    name: str | None = None
    url: str | None = Field(default=None, description="alertmanager/webhook/pagerduty endpoint (no secret in it)")
    url_env: str | None = Field(default=None, description="env variable holding the URL (Slack webhooks are secrets)")
    routing_key_env: str | None = Field(default=None, description="pagerduty: env variable holding the routing key")
    token_env: str | None = Field(default=None, description="webhook/alertmanager: env variable of a bearer token")
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    max_retries: int = Field(default=4, ge=0, le=20)

    @model_validator(mode="after")
    def _where(self) -> "WatchRoute":
        if self.kind == "slack" and not self.url_env:
            raise ValueError("a slack route needs url_env: the incoming webhook URL is a secret")
        if self.kind in ("alertmanager", "webhook") and not (self.url or self.url_env):
            raise ValueError(f"a {self.kind} route needs url: or url_env:")
        if self.kind == "pagerduty" and not self.routing_key_env:
            raise ValueError("a pagerduty route needs routing_key_env: (the integration's routing key)")
        if self.url and "@" in self.url.split("//", 1)[-1].split("/", 1)[0]:
            raise ValueError("url: holds credentials; put the URL in an env variable (url_env:)")
        return self

    @property
    def label(self) -> str:
        return self.name or self.kind


class WatchSection(Strict):
    """`agentfire watch`: each round reads the trajectories that ended (or went stale) since the
    last, runs triage's detectors and policies, groups findings by signature and pages."""

    every_seconds: float = Field(default=60, ge=1, le=86400)
    lookback_seconds: float = Field(
        default=3600, gt=0, le=7 * 86400,
        description="how long a trajectory may run: each round reads what started this far back")
    lag_seconds: float = Field(
        default=60, ge=0, le=3600, description="ingestion lag: a trajectory that shows up this late is still read")
    max_per_round: int = Field(default=20000, ge=1, le=1000000,
                               description="trajectories triaged per round at most (the rest: next round)")
    read_timeout_seconds: float = Field(default=120, gt=0, le=3600,
                                        description="a store read longer than this is a round error")
    resolve_after_seconds: float = Field(default=900, gt=0, le=7 * 86400,
                                         description="an alert with no new trajectory this long resolves")
    state: str = Field(default=".agentfire/watch-state.json", description="watch's position and open alerts")
    rules: list[WatchRule] = Field(default_factory=lambda: [
        WatchRule(name="high", min_severity="high", threshold=1, severity="critical"),
        WatchRule(name="medium", min_severity="medium", threshold=3, severity="warning"),
    ])
    routes: list[WatchRoute] = Field(default_factory=list)


class RunbookConfig(Strict):
    version: Literal[1] = 1
    agent: AgentSection
    regions: dict[str, dict[str, Any]]
    budget: dict[str, Any] = Field(default_factory=lambda: {"kind": "sqlite"})
    traces: dict[str, Any] = Field(default_factory=lambda: {"kind": "files"})
    kill: KillSection = Field(default_factory=KillSection)
    evals: EvalsSection = Field(default_factory=EvalsSection)
    golden: GoldenSection = Field(default_factory=GoldenSection)
    journal: JournalSection = Field(default_factory=JournalSection)
    triage: TriageSection = Field(default_factory=TriageSection)
    policies: list[PolicyRule] = Field(default_factory=list)
    steps: list[RunbookStep] = Field(default_factory=list)
    # model name (or glob) -> price: cost of model steps the trace store left unpriced (tokens only)
    prices: dict[str, ModelPrice] = Field(default_factory=dict)
    watch: WatchSection = Field(default_factory=WatchSection)
    gameday: GamedaySection = Field(default_factory=GamedaySection)

    @field_validator("steps")
    @classmethod
    def _unique_step_ids(cls, value: list[RunbookStep]) -> list[RunbookStep]:
        # the walk keys its state by id: a second step with the same id would never run
        seen: set[str] = set()
        for step in value:
            if step.id in seen:
                raise ValueError(f"step id {step.id!r} is used twice; each step needs its own id")
            seen.add(step.id)
        return value

    @field_validator("regions")
    @classmethod
    def _at_least_one_region(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not value:
            raise ValueError("at least one region is required")
        return value

    @model_validator(mode="after")
    def _gameday_regions_exist(self) -> "RunbookConfig":
        unknown = [r for r in (self.gameday.regions or []) if r not in self.regions]
        if unknown or self.gameday.regions == []:
            raise ValueError(f"gameday.regions: {', '.join(map(repr, unknown)) or 'empty'}: drills need "
                             f"regions this runbook defines ({', '.join(self.regions)})")
        return self


# Built-in provider schemas, keyed by family then kind. Third-party providers add theirs through
# the `agentfire.providers` entry points (see agentfire.providers).
PROVIDER_SCHEMAS: dict[str, dict[str, type[Strict]]] = {
    "flags": {"flagd": FlagdRegion, "unleash": UnleashRegion, "launchdarkly": LaunchDarklyRegion},
    "budget": {"sqlite": SqliteBudget, "redis": RedisBudget},
    "traces": {"files": FilesTraces, "langfuse": LangfuseTraces, "phoenix": PhoenixTraces},
}


# --- YAML with line numbers ----------------------------------------------------------------


# A runbook is a few hundred lines: these bounds are far above any real one and far below what
# hangs or crashes the parser (a 353-byte alias bomb expands to a billion nodes; deep nesting
# exhausts the recursion limit; a self-referencing alias never ends).
MAX_CONFIG_BYTES = 1024 * 1024
MAX_CONFIG_NODES = 20_000
MAX_CONFIG_DEPTH = 64
MAX_NESTING_SCAN = 200  # brackets/indent levels looked at before the parser sees the text


def _too_deep_for_parser(text: str) -> bool:
    """Flow nesting ([ [ [ ... or { {: ...) deeper than the parser's recursion can take."""
    depth = 0
    for ch in text:
        if ch in "[{":
            depth += 1
            if depth > MAX_NESTING_SCAN:
                return True
        elif ch in "]}":
            depth = max(0, depth - 1)
    return False


def _compose(text: str, path: Path) -> tuple[Any, dict[tuple, int]]:
    """Parse YAML, returning plain data and a map from key path to 1-based line number.

    Bounded: size, nesting depth and the number of nodes after alias expansion; a node that
    contains itself is refused. Each is one ConfigError naming the file."""
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: {len(text):,} characters; a runbook.yaml is at most "
                          f"{MAX_CONFIG_BYTES:,} (is this the right file?)")
    if _too_deep_for_parser(text):
        raise ConfigError(f"{path}: nested more than {MAX_CONFIG_DEPTH} levels deep; not a runbook")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}{where}: not valid YAML: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to parse; not a runbook") from None
    lines: dict[tuple, int] = {}
    loader = yaml.SafeLoader("")
    count = [0]
    inside: set[int] = set()  # ids of the collection nodes on the current path

    def walk(n: yaml.Node, at: tuple) -> Any:
        count[0] += 1
        line = n.start_mark.line + 1
        if count[0] > MAX_CONFIG_NODES:
            raise ConfigError(f"{path}:{line}: more than {MAX_CONFIG_NODES:,} values once aliases are "
                              "expanded (an alias bomb?); a runbook needs far fewer")
        if len(at) > MAX_CONFIG_DEPTH:
            raise ConfigError(f"{path}:{line}: nested more than {MAX_CONFIG_DEPTH} levels deep; not a runbook")
        if isinstance(n, (yaml.MappingNode, yaml.SequenceNode)):
            if id(n) in inside:
                raise ConfigError(f"{path}:{line}: an alias refers to a value that contains it "
                                  "(a self-referencing alias); not a runbook")
            inside.add(id(n))
            try:
                return _walk_collection(n, at)
            finally:
                inside.discard(id(n))
        lines.setdefault(at, line)
        return loader.construct_object(n, deep=True)

    def _walk_collection(n: yaml.Node, at: tuple) -> Any:
        lines.setdefault(at, n.start_mark.line + 1)
        if isinstance(n, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for k, v in n.value:
                if not isinstance(k, yaml.ScalarNode):
                    raise ConfigError(f"{path}:{k.start_mark.line + 1}: a key must be a plain name, "
                                      "not a list or a mapping")
                key = loader.construct_object(k, deep=True)
                if key in out:
                    raise ConfigError(
                        f"{path}:{k.start_mark.line + 1}: key {key!r} appears twice"
                    )
                lines[at + (key,)] = k.start_mark.line + 1
                out[key] = walk(v, at + (key,))
            return out
        return [walk(v, at + (i,)) for i, v in enumerate(n.value)]

    if node is None:
        return None, lines
    return walk(node, ()), lines


def _line_for(loc: tuple, lines: dict[tuple, int]) -> int | None:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def _valid_keys(model: type[BaseModel]) -> str:
    return ", ".join(model.model_fields)


def _model_at(root: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The model class that holds the last element of loc (for 'valid keys' hints)."""
    current: Any = root
    for part in loc[:-1]:
        if isinstance(current, type) and issubclass(current, BaseModel):
            f = current.model_fields.get(part) if isinstance(part, str) else None
            if f is None:
                return None
            current = f.annotation
            args = getattr(current, "__args__", ())
            if getattr(current, "__origin__", None) is list and args:
                current = args[0]
        elif isinstance(part, int):
            continue
        else:
            return None
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _format_errors(
    exc: ValidationError, path: Path, lines: dict[tuple, int], prefix: tuple, model: type[BaseModel]
) -> str:
    msgs = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        full = prefix + loc
        line = _line_for(full, lines)
        dotted = ".".join(str(p) for p in full) or "(top level)"
        kind = err["type"]
        if kind == "extra_forbidden":
            holder = _model_at(model, loc)
            valid = f" (valid keys: {_valid_keys(holder)})" if holder else ""
            text = f"unknown key {loc[-1]!r}{valid}"
        elif kind == "missing":
            text = "required field is missing"
        elif kind == "literal_error":
            text = f"invalid value {err.get('input')!r}; {err['msg'].lower()}"
        else:
            text = err["msg"]
            if "input" in err and not isinstance(err["input"], (dict, list)):
                text += f" (got {err['input']!r})"
        msgs.append(f"{path}:{line or '?'}: {dotted}: {text}")
    return "\n".join(msgs)


def _validate_provider(
    family: str, raw: Any, at: tuple, path: Path, lines: dict[tuple, int]
) -> BaseModel:
    from agentfire.providers import provider_schemas

    schemas = provider_schemas(family, raw.get("kind") if isinstance(raw, dict) else None)
    line = _line_for(at, lines)
    where = f"{path}:{line or '?'}: {'.'.join(str(a) for a in at)}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be a mapping with a 'kind' ({', '.join(schemas)})")
    kind = raw.get("kind")
    if kind not in schemas:
        got = "missing" if kind is None else f"{kind!r}"
        raise ConfigError(f"{where}.kind: {got}; valid kinds: {', '.join(schemas)}")
    model = schemas[kind]
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, path, lines, at, model)) from None


def load_runbook(path: str | os.PathLike[str] | None = None) -> Runbook:
    """Read and validate runbook.yaml (see _load_runbook), with pydantic's plugin discovery off:
    it reads the entry points of every installed distribution (tens of ms of every command's
    start) and the runbook needs no plugin (typer turns it off for its parameters the same way)."""
    previous = os.environ.get("PYDANTIC_DISABLE_PLUGINS")
    os.environ["PYDANTIC_DISABLE_PLUGINS"] = "__all__"
    try:
        return _load_runbook(path)
    finally:
        if previous is None:
            os.environ.pop("PYDANTIC_DISABLE_PLUGINS", None)
        else:
            os.environ["PYDANTIC_DISABLE_PLUGINS"] = previous


def _load_runbook(path: str | os.PathLike[str] | None = None) -> Runbook:
    """Find, parse and validate runbook.yaml. Raises ConfigError with file:line: field: what."""
    cfg_path = find_config(path)
    try:
        size = cfg_path.stat().st_size
    except OSError as exc:
        raise ConfigError(f"{cfg_path}: cannot read: {exc}") from None
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{cfg_path}: {size:,} bytes; a runbook.yaml is at most "
                          f"{MAX_CONFIG_BYTES:,} (is this the right file?)")
    try:
        text = cfg_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{cfg_path}: cannot read: {exc}") from None
    data, lines = _compose(text, cfg_path)
    if not isinstance(data, dict):
        raise ConfigError(f"{cfg_path}:1: the file must be a mapping (agent:, regions:, ...)")
    try:
        model = RunbookConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, cfg_path, lines, (), RunbookConfig)) from None
    regions = {
        name: _validate_provider("flags", raw, ("regions", name), cfg_path, lines)
        for name, raw in model.regions.items()
    }
    budget = _validate_provider("budget", model.budget, ("budget",), cfg_path, lines)
    traces = _validate_provider("traces", model.traces, ("traces",), cfg_path, lines)
    env_names = sorted(
        {
            v
            for section in (*regions.values(), budget, traces, *model.watch.routes)
            for k, v in section.model_dump().items()
            if k.endswith("_env") and isinstance(v, str)
        }
    )
    return Runbook(cfg_path, model, regions, budget, traces, tuple(env_names))


def resolve_env(name: str, *, what: str) -> str:
    """The value of a secret's env variable, or a ConfigError that names it (never the value)."""
    value = os.environ.get(name)
    if not value:
        raise ConfigError(f"environment variable ${name} is not set ({what})")
    return value


def check_url(url: str, *, schemes: tuple[str, ...], what: str) -> str:
    """A URL from runbook.yaml or the environment, or one clear ConfigError (never a traceback
    from deep in a client library): a known scheme, a host (unix:// excepted) and a valid port.
    The message never repeats the URL, which may carry a password."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url.strip())
        port = parts.port  # ValueError for "notaport" or 99999
    except ValueError as exc:
        raise ConfigError(f"{what}: not a valid URL ({exc})") from None
    if parts.scheme not in schemes:
        raise ConfigError(f"{what}: must start with {' or '.join(s + '://' for s in schemes)}"
                          + (f" (got {parts.scheme}://)" if parts.scheme else ""))
    if parts.scheme != "unix" and not parts.hostname:
        raise ConfigError(f"{what}: no host in the URL")
    if port == 0:
        raise ConfigError(f"{what}: port 0 is not a port")
    return url
