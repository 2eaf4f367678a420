"""A separate agent process that asks `agentfire.guard.agent_enabled()` in a loop, as a real agent
would before each action, and prints every change of its answer with a wall-clock time.

Used by the tests (kill, undo, source down, hung, malformed definitions) and by the benchmark
(kill-to-off per provider). `GuardAgent.wait_for(enabled, timeout)` returns the time the agent
first gave that answer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

SCRIPT = r'''
import json, os, sys, time
from agentfire import guard

region, config = sys.argv[1], sys.argv[2]
ctx = json.loads(sys.argv[3]) if len(sys.argv) > 3 else None
until = time.time() + float(os.environ.get("AGENT_SECONDS", "180"))
last = None
print("STARTED", flush=True)
while time.time() < until:
    d = guard.agent_enabled(region, config=config, context=ctx)
    state = (d.enabled, d.reason)
    if state != last:
        print("STATE " + json.dumps({"t": time.time(), "enabled": d.enabled, "reason": d.reason,
                                     "fallback": d.fallback}), flush=True)
        last = state
    time.sleep(0.002)
print("DONE", flush=True)
'''


class GuardAgent:
    def __init__(self, region: str, config: Path, *, context: dict[str, Any] | None = None,
                 env: dict[str, str] | None = None, seconds: float = 180):
        full = dict(os.environ)
        full["PYTHONPATH"] = str(REPO) + os.pathsep + full.get("PYTHONPATH", "")
        full["AGENT_SECONDS"] = str(seconds)
        full.pop("AGENTFIRE_CONFIG", None)
        if env:
            full.update(env)
        args = [sys.executable, "-c", SCRIPT, region, str(config)]
        if context is not None:
            args.append(json.dumps(context))
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=full, cwd=str(config.parent))
        self.states: list[dict[str, Any]] = []
        self._from = 0
        self._err: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        threading.Thread(target=self._pump_err, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("STATE "):
                doc = json.loads(line[6:])
                self.states.append(doc)

    def _pump_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._err.append(line)
            del self._err[:-50]

    @property
    def current(self) -> dict[str, Any] | None:
        return self.states[-1] if self.states else None

    def mark(self) -> None:
        """From now on, wait_for looks only at answers given after this point (and the current one)."""
        self._from = max(0, len(self.states) - 1)

    def wait_for(self, enabled: bool, timeout: float, *, reason_has: str = "") -> dict[str, Any]:
        """The first answer since the last mark() with this value (and reason text); an
        AssertionError after `timeout` seconds."""
        end = time.monotonic() + timeout
        i = self._from
        while True:
            while i < len(self.states):
                doc = self.states[i]
                i += 1
                if doc["enabled"] is enabled and reason_has in doc["reason"]:
                    self._from = i - 1
                    return doc
            if time.monotonic() >= end or self.proc.poll() is not None:
                break
            time.sleep(0.002)
        raise AssertionError(
            f"the agent never answered enabled={enabled} ({reason_has!r}) within {timeout}s; "
            f"its answers: {[(s['enabled'], s['reason']) for s in self.states][-6:]}; "
            f"stderr: {''.join(self._err)[-1500:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)

    def __enter__(self) -> "GuardAgent":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
