"""The agent's side, measured side by side in one run:  python3 bench/guard_bench.py

(a) `guard.agent_enabled()` per call in steady state, per provider, against the old path (what the
    guard did before issue 13: re-read runbook.yaml, build the provider and its HTTP client, and
    make one read through the management API, on every call). Target: under 50 us per call.
      flagd         a flagd file, openfeature-provider-flagd (in-process FILE resolver)
      launchdarkly  the LaunchDarkly server SDK (streaming) against tests/fakes/launchdarkly.py's
                    SDK endpoints; old path: the REST API of the same fake
      unleash       UnleashClient with a backend token against a real Unleash 8.2 (when installed:
                    scripts/install-servers.sh); old path: its REST API
      openfeature   a third-party OpenFeature provider named in runbook.yaml (in-memory)
(b) kill-to-off per provider: a separate agent process asks the guard in a loop; `agentfire kill`
    runs as a process; the time from kill returning (and from kill starting) to the agent's first
    "off", with each SDK's refresh settings (LaunchDarkly streaming and polling every 30 s,
    Unleash polling every 15 s, its default, and every 1 s).

    --quick skips the slow polling cases (LaunchDarkly 30 s, Unleash 15 s).
Prints tables; exits 1 when a steady-state target is missed. Timings belong here, not in pytest.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

FLAG = "agent.enabled"
LD_TOKEN = "api-bench-0000-access-token"
TARGET_US = 50.0

sys.path.insert(0, str(Path(__file__).resolve().parent))
from budget_bench import per_call_us  # noqa: E402  (one way to time a call in bench/)


def write_runbook(root: Path, name: str, region: dict[str, Any]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "fallbacks").exists():
        shutil.copytree(REPO / "fallbacks", root / "fallbacks")
    doc = {"version": 1, "agent": {"name": "bench-agent", "flag": FLAG, "fallback": "fallbacks/support-agent.md"},
           "regions": {name: region}, "kill": {"deadline_seconds": 30},
           "journal": {"dir": "incidents"}, "traces": {"kind": "files", "path": "traces", "seed_scenario": None}}
    (root / "runbook.yaml").write_text(json.dumps(doc, indent=2))
    return root / "runbook.yaml"


def old_path(cfg: Path, region: str) -> bool:
    """What agent_enabled did before: everything per call, one management-API read."""
    from agentfire import providers
    from agentfire.config import load_runbook

    rb = load_runbook(cfg)
    provider = providers.build("flags", rb.regions[region], rb)

    async def read() -> bool:
        try:
            return await asyncio.wait_for(provider.read(rb.agent.flag), 2.0)
        finally:
            await provider.aclose()

    return asyncio.run(read())


def run_cli(root: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    full = dict(os.environ, **env, NO_COLOR="1")
    full["PYTHONPATH"] = str(REPO) + os.pathsep + full.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "agentfire", "--config", str(root / "runbook.yaml"), *args],
                          capture_output=True, text=True, env=full, timeout=120, cwd=root)


def kill_to_off(root: Path, region: str, *, cli_env: dict[str, str], agent_env: dict[str, str],
                reset: Any, repeats: int, timeout: float) -> list[tuple[float, float]]:
    """[(seconds from kill returning to agent off, seconds from kill starting to agent off)]."""
    from tests.guard_agent import GuardAgent

    out = []
    with GuardAgent(region, root / "runbook.yaml", env=agent_env, seconds=600) as agent:
        for i in range(repeats):
            reset()
            agent.mark()
            agent.wait_for(True, 120)
            time.sleep(0.5)
            agent.mark()
            started = time.time()
            r = run_cli(root, "--incident", f"inc-bench-{region}-{i}-{int(started)}", "--new", "kill", "--region", region,
                        "--yes", env=cli_env)
            returned = time.time()
            if r.returncode != 0:
                raise SystemExit(f"kill failed in {region}: {r.stdout[-800:]} {r.stderr[-800:]}")
            off = agent.wait_for(False, timeout, reason_has="kill switch is off")
            out.append((off["t"] - returned, off["t"] - started))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=50_000)
    ap.add_argument("--old-calls", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="skip the 15 s and 30 s polling cases")
    args = ap.parse_args()

    from agentfire import guard
    from tests.fakes.launchdarkly import LaunchDarklyFake

    tmp = Path(tempfile.mkdtemp(prefix="agentfire-guard-bench-"))
    steady: list[tuple[str, float, float | None, str]] = []
    lags: list[tuple[str, str, list[tuple[float, float]]]] = []
    with ExitStack() as stack:
        # --- flagd -------------------------------------------------------------------------------
        fl = tmp / "flagd"
        cfg = write_runbook(fl, "local", {"kind": "flagd", "path": "flags/local.flagd.json", "create": True})
        assert run_cli(fl, "status", env={}).returncode == 0  # creates the file, agent on
        assert guard.agent_enabled("local", config=str(cfg)).enabled
        new = per_call_us(lambda: guard.agent_enabled("local", config=str(cfg)), args.calls)
        old = per_call_us(lambda: old_path(cfg, "local"), args.old_calls, repeats=2)
        steady.append(("flagd file", new, old, "file read + JSON parse per call"))

        def flagd_reset() -> None:
            from agentfire.providers.flags.flagd import FlagdFileProvider

            FlagdFileProvider(fl / "flags/local.flagd.json").write_sync(FLAG, True, comment="bench", dry_run=False)

        lags.append(("flagd file", "in-process file provider, stat per call",
                     kill_to_off(fl, "local", cli_env={}, agent_env={}, reset=flagd_reset,
                                 repeats=args.repeats, timeout=30)))

        # --- LaunchDarkly (contract fake's SDK endpoints) ------------------------------------------
        fake = LaunchDarklyFake(tokens=(LD_TOKEN,))
        fake.add_env("production")
        fake.add_flag(FLAG, on=True)
        fake.start()
        stack.callback(fake.stop)
        sdk_env = {"BENCH_LD_SDK_KEY": fake.sdk_keys["production"]}
        os.environ.update(sdk_env, LD_ACCESS_TOKEN=LD_TOKEN)
        ld_region = {"kind": "launchdarkly", "base_url": fake.url, "project": "default", "environment": "production",
                     "sdk_key_env": "BENCH_LD_SDK_KEY", "stream_uri": fake.url, "sdk_base_uri": fake.url,
                     "send_events": False}
        ld = tmp / "ld"
        cfg = write_runbook(ld, "ld", ld_region)
        d = guard.agent_enabled("ld", config=str(cfg))
        assert d.enabled, d.reason
        new = per_call_us(lambda: guard.agent_enabled("ld", config=str(cfg)), args.calls)
        old = per_call_us(lambda: old_path(cfg, "ld"), args.old_calls, repeats=2)
        steady.append(("launchdarkly", new, old, "REST read per call (access token); fake on loopback"))
        cli_env = {"LD_ACCESS_TOKEN": LD_TOKEN}
        lags.append(("launchdarkly", "server SDK, streaming",
                     kill_to_off(ld, "ld", cli_env=cli_env, agent_env=sdk_env,
                                 reset=lambda: fake.set_on(FLAG, "production", True),
                                 repeats=args.repeats, timeout=30)))
        if not args.quick:
            ldp = tmp / "ld-poll"
            write_runbook(ldp, "ld", {**ld_region, "stream": False})
            lags.append(("launchdarkly", "server SDK, polling every 30 s (its minimum)",
                         kill_to_off(ldp, "ld", cli_env=cli_env, agent_env=sdk_env,
                                     reset=lambda: fake.set_on(FLAG, "production", True),
                                     repeats=1, timeout=90)))

        # --- a third-party OpenFeature provider ----------------------------------------------------
        of = tmp / "openfeature"
        cfg = write_runbook(of, "mem", {"kind": "flagd", "path": "flags/mem.json", "create": True,
                                        "openfeature_provider": {"provider": "tests.fakes.memory_openfeature:provider",
                                                                 "options": {"flags": {FLAG: True}}}})
        assert guard.agent_enabled("mem", config=str(cfg)).enabled
        new = per_call_us(lambda: guard.agent_enabled("mem", config=str(cfg)), args.calls)
        steady.append(("openfeature (in-memory)", new, None, "-"))

        # --- Unleash (real server) -----------------------------------------------------------------
        try:
            from tests.servers.unleash import running_unleash

            server = stack.enter_context(running_unleash(tmp / "unleash-logs"))
        except BaseException as exc:  # pytest.skip: not installed
            print(f"Unleash: skipped ({type(exc).__name__}: {str(exc)[:200]})")
            server = None
        if server is not None:
            flag = server.create_flag(f"bench.{int(time.time())}")
            env = {"BENCH_UL_ADMIN": server.admin_token, "BENCH_UL_BACKEND": server.backend_tokens["production"]}
            os.environ.update(env)
            region = {"kind": "unleash", "url": server.url, "environment": "production", "token_env": "BENCH_UL_ADMIN",
                      "client_token_env": "BENCH_UL_BACKEND"}

            def unleash_cfg(root: Path, **over: Any) -> Path:
                c = write_runbook(root, "ul", {**region, **over})
                doc = json.loads(c.read_text())
                doc["agent"]["flag"] = flag
                c.write_text(json.dumps(doc, indent=2))
                return c

            ul = tmp / "unleash"
            cfg = unleash_cfg(ul)
            end = time.monotonic() + 30
            while not guard.agent_enabled("ul", config=str(cfg)).enabled:
                if time.monotonic() > end:
                    raise SystemExit(f"unleash: {guard.agent_enabled('ul', config=str(cfg)).reason}")
                time.sleep(0.2)
            new = per_call_us(lambda: guard.agent_enabled("ul", config=str(cfg)), args.calls)
            old = per_call_us(lambda: old_path(cfg, "ul"), args.old_calls, repeats=2)
            steady.append(("unleash", new, old, "REST read per call; real Unleash 8.2 on loopback"))
            agent_env = {"BENCH_UL_ADMIN": "", "BENCH_UL_BACKEND": server.backend_tokens["production"]}
            ul1 = tmp / "unleash-1s"
            unleash_cfg(ul1, refresh_interval_seconds=1)
            lags.append(("unleash", "UnleashClient polling every 1 s",
                         kill_to_off(ul1, "ul", cli_env=env, agent_env=agent_env,
                                     reset=lambda: server.set_admin(flag, "production", True),
                                     repeats=args.repeats, timeout=30)))
            if not args.quick:
                lags.append(("unleash", "UnleashClient polling every 15 s (default)",
                             kill_to_off(ul, "ul", cli_env=env, agent_env=agent_env,
                                         reset=lambda: server.set_admin(flag, "production", True),
                                         repeats=2, timeout=60)))
        guard.forget_agents()

    print(f"\n(a) agent_enabled() per call, steady state (best of 5 runs; target < {TARGET_US:g} us)")
    print(f"{'provider':<26} {'new us/call':>12} {'old us/call':>12} {'old / new':>10}  old path")
    ok = True
    for name, new, old, how in steady:
        ok &= new < TARGET_US
        ratio = f"{old / new:>9.0f}x" if old else f"{'-':>10}"
        print(f"{name:<26} {new:>12.2f} {old if old else float('nan'):>12.0f} {ratio}  {how}")
    print("\n(b) kill-to-off: a separate agent process, `agentfire kill` as a process")
    print(f"{'provider':<14} {'how agents read':<46} {'after kill returned (s)':>24} {'from kill start (s)':>20}")
    for name, how, samples in lags:
        after = [a for a, _ in samples]
        start = [b for _, b in samples]
        print(f"{name:<14} {how:<46} {_fmt(after):>24} {_fmt(start):>20}")
    print("(negative: the agent was off before kill returned; kill reads back, as an agent too, before it returns)")
    print(f"steady-state target < {TARGET_US:g} us: {'met' if ok else 'NOT met'} "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


def _fmt(xs: list[float]) -> str:
    if not xs:
        return "-"
    if len(xs) == 1:
        return f"{xs[0]:.2f}"
    return f"median {statistics.median(xs):.2f} max {max(xs):.2f}"


if __name__ == "__main__":
    raise SystemExit(main())
