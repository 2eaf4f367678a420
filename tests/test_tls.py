"""TLS and proxies like the rest of the ecosystem (#13): a private CA through the region's `ca_file`,
$SSL_CERT_FILE or $REQUESTS_CA_BUNDLE; a client certificate where the server wants mTLS; errors
that name the proxy. Against the LaunchDarkly contract fake served over HTTPS with a throwaway CA,
both for the CLI (REST API, httpx) and for the agents (the LaunchDarkly server SDK)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.conftest import REPO, free_port
from tests.fakes.launchdarkly import LaunchDarklyFake

pytest.importorskip("cryptography")
from tests.fakes.certs import Pki, make_pki  # noqa: E402

TOKEN = "api-tls-0000-secret-token"
FLAG = "agent.enabled"


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


def start_fake(pki: Pki, *, mtls: bool = False) -> LaunchDarklyFake:
    fake = LaunchDarklyFake(tokens=(TOKEN,))
    fake.add_env("production")
    fake.add_flag(FLAG, on=True)
    return fake.start(tls=pki.server_context(require_client_cert=mtls))


@pytest.fixture
def ops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = tmp_path / "ops"
    root.mkdir()
    shutil.copytree(REPO / "fallbacks", root / "fallbacks")
    monkeypatch.chdir(root)
    monkeypatch.setenv("AGENTFIRE_CONFIG", str(root / "runbook.yaml"))
    monkeypatch.setenv("LD_ACCESS_TOKEN", TOKEN)
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy",
                 "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    from agentfire import _http, guard

    _http._tls_contexts.clear()
    monkeypatch.setattr(guard, "RUNBOOK_RECHECK_S", 0.0)
    guard.forget_agents()
    yield root
    guard.forget_agents()


def write(root: Path, fake: LaunchDarklyFake, **over: Any) -> None:
    region = {"kind": "launchdarkly", "base_url": fake.url, "project": "default", "environment": "production",
              "timeout_seconds": 5, **over}
    doc = {"version": 1, "agent": {"name": "support-agent", "flag": FLAG, "fallback": "fallbacks/support-agent.md"},
           "regions": {"ld": region}, "kill": {"deadline_seconds": 15, "max_retries": 0},
           "journal": {"dir": ".agentfire/incidents"}}
    (root / "runbook.yaml").write_text(json.dumps(doc))


def outcome(cli: Any) -> dict[str, Any]:
    r = cli("--incident", f"inc-tls-{free_port()}", "--new", "kill", "--json")
    return r.json()["regions"][0]


def test_private_ca_by_ca_file_or_environment(ops: Path, pki: Pki, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = start_fake(pki)
    try:
        write(ops, fake)
        bad = outcome(cli)
        assert bad["outcome"] == "UNREACHABLE" and "CERTIFICATE_VERIFY_FAILED" in bad["detail"]
        write(ops, fake, ca_file=str(pki.ca))
        assert outcome(cli)["outcome"] == "CONFIRMED"
        fake.set_on(FLAG, "production", True)
        write(ops, fake)
        for env in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
            monkeypatch.setenv(env, str(pki.ca))
            assert outcome(cli)["outcome"] == "CONFIRMED", env
            fake.set_on(FLAG, "production", True)
            monkeypatch.delenv(env)
    finally:
        fake.stop()


def test_client_certificate_for_mtls(ops: Path, pki: Pki, cli) -> None:
    fake = start_fake(pki, mtls=True)
    try:
        write(ops, fake, ca_file=str(pki.ca))
        assert outcome(cli)["outcome"] == "UNREACHABLE"  # the server wants a client certificate
        write(ops, fake, ca_file=str(pki.ca), client_cert_file=str(pki.client_cert),
              client_key_file=str(pki.client_key))
        assert outcome(cli)["outcome"] == "CONFIRMED"
    finally:
        fake.stop()


def test_agents_sdk_trusts_the_ca_file(ops: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ld_openfeature", reason="pip install 'agentfire[launchdarkly]'")
    from agentfire import guard

    fake = start_fake(pki)
    try:
        monkeypatch.setenv("AF_TEST_LD_SDK_KEY", fake.sdk_keys["production"])
        sdk = {"sdk_key_env": "AF_TEST_LD_SDK_KEY", "stream_uri": fake.url, "sdk_base_uri": fake.url,
               "send_events": False, "init_timeout_seconds": 2}
        write(ops, fake, **sdk)
        d = guard.agent_enabled("ld")
        assert not d and "not ready" in d.reason  # an untrusted server is never read
        guard.forget_agents()
        write(ops, fake, ca_file=str(pki.ca), **sdk)
        d = guard.agent_enabled("ld")
        assert d.enabled, d.reason
    finally:
        fake.stop()


def test_a_dead_proxy_is_named_not_the_vendor(ops: Path, pki: Pki, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = start_fake(pki)
    try:
        write(ops, fake, ca_file=str(pki.ca))
        dead = free_port()
        monkeypatch.setenv("HTTPS_PROXY", f"http://ops:hunter2@127.0.0.1:{dead}")
        row = outcome(cli)
        assert row["outcome"] == "UNREACHABLE"
        assert f"proxy http://***@127.0.0.1:{dead}" in row["detail"] and "hunter2" not in row["detail"]
        assert fake.is_on(FLAG, "production")  # nothing reached the server
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        assert outcome(cli)["outcome"] == "CONFIRMED"
    finally:
        fake.stop()
