#!/usr/bin/env bash
# Installs, idempotently, the real agent frameworks and their real tracing instrumentations that the
# trace-conformance suite (tests/conformance/) runs with scripted models: LangGraph with
# openinference-instrumentation-langchain and with the Langfuse SDK's LangChain handler, the OpenAI
# Agents SDK with openinference-instrumentation-openai-agents, pydantic-ai (its own OTel GenAI
# instrumentation) and smolagents with openinference-instrumentation-smolagents.
# They live in their own venv under $AGENTFIRE_SERVERS_DIR so that they never change agentfire's
# own dependencies; each scripted agent runs as a subprocess of that venv's python.
set -euo pipefail

SERVERS_DIR="${AGENTFIRE_SERVERS_DIR:-$HOME/.cache/agentfire/servers}"
VENV="$SERVERS_DIR/frameworks-venv"
log() { printf '[install-frameworks] %s\n' "$*" >&2; }

# one line per package; the stamp file records what was installed, so a second run is a no-op
PACKAGES=(
  "langgraph==1.2.22"
  "langchain-core==1.8.1"
  "openinference-instrumentation-langchain==0.1.80"
  "openai-agents==0.24.0"
  "openinference-instrumentation-openai-agents==2.6.0"
  "pydantic-ai-slim==2.68.0"
  "smolagents==1.26.0"
  "openinference-instrumentation-smolagents==0.1.43"
  "opentelemetry-sdk"
  "opentelemetry-exporter-otlp-proto-http"
  "langfuse==5.0.4"
)
STAMP="$VENV/.agentfire-frameworks"
WANT="$(printf '%s\n' "${PACKAGES[@]}")"
if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
  log "frameworks ready in $VENV"
  exit 0
fi
mkdir -p "$SERVERS_DIR"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
log "pip install ${#PACKAGES[@]} framework packages into $VENV (about a minute)"
"$VENV/bin/pip" install -q --disable-pip-version-check "${PACKAGES[@]}"
printf '%s\n' "$WANT" > "$STAMP"
log "frameworks ready in $VENV"
