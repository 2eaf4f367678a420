"""A real Prometheus Alertmanager (Debian's `prometheus-alertmanager`, installed by
scripts/install-servers.sh) on a free loopback port, routing every alert to a local webhook
receiver the test runs (tests.fakes.alerting.Receiver), with send_resolved and short group waits.

    from tests.servers.alertmanager import alertmanager  # noqa: F401  (the fixture)

    def test_x(alertmanager):
        alertmanager.url                   # http://127.0.0.1:PORT  (POST /api/v2/alerts)
        alertmanager.notifications()       # what Alertmanager sent to the receiver
        alertmanager.alerts()              # GET /api/v2/alerts
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.conftest import free_port, require_server
from tests.fakes.alerting import Receiver

BINARY = "prometheus-alertmanager"
CONFIG = """\
route:
  receiver: watch-test
  group_by: ['alertname', 'signature']
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: watch-test
    webhook_configs:
      - url: {url}
        send_resolved: true
"""


@dataclass
class Alertmanager:
    url: str
    process: subprocess.Popen
    receiver: Receiver
    log: Path

    def notifications(self) -> list[dict[str, Any]]:
        return [r.body for r in self.receiver.received if r.path == "/am"]

    def alerts(self, active: bool = True) -> list[dict[str, Any]]:
        q = "?active=true&silenced=false&inhibited=false" if active else ""
        with urllib.request.urlopen(self.url + "/api/v2/alerts" + q, timeout=5) as r:
            return json.loads(r.read())

    def wait_for(self, what: Callable[[], Any], timeout_s: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = what()
            if got:
                return got
            time.sleep(0.2)
        raise AssertionError(f"Alertmanager: nothing after {timeout_s}s; log: {self.log.read_text()[-2000:]}")


def start_alertmanager(workdir: Path, receiver: Receiver, timeout_s: float = 30.0) -> Alertmanager:
    binary = shutil.which(BINARY)
    assert binary, f"{BINARY} is not installed"
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "alertmanager.yml"
    cfg.write_text(CONFIG.format(url=receiver.url + "/am"))
    port = free_port()
    log = workdir / "alertmanager.log"
    proc = subprocess.Popen(
        [binary, f"--config.file={cfg}", f"--storage.path={workdir / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=", "--log.level=info"],
        stdout=open(log, "wb"), stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"alertmanager exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/-/ready", timeout=1) as r:
                if r.status == 200:
                    return Alertmanager(url, proc, receiver, log)
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"alertmanager did not get ready on {url} within {timeout_s}s")


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[Alertmanager]:
    require_server("prometheus-alertmanager", shutil.which(BINARY) is not None)
    with Receiver() as receiver:
        am = start_alertmanager(tmp_path / "alertmanager", receiver)
        try:
            yield am
        finally:
            am.process.terminate()
            try:
                am.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                am.process.kill()
                am.process.wait(timeout=5)
