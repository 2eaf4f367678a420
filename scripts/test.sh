#!/usr/bin/env bash
# The whole test suite on a fresh machine: Python packages, the real servers, then pytest.
# Extra arguments go to pytest (scripts/test.sh -k kill).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --disable-pip-version-check -e '.[test]'
bash scripts/install-servers.sh
bash scripts/install-frameworks.sh
exec python3 -m pytest "$@"
