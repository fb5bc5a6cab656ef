#!/usr/bin/env bash
# README's test command: prepares everything the tests need, then runs them all.
#   - the wasm32-wasip2 target for guest scripts,
#   - PostgreSQL and MariaDB (scripts/setup-databases.sh),
#   - componentize-py for the Python scripts (python-sdk/requirements.txt),
#   - the contract tests' tools: openapi-spec-validator, schemathesis, openapi-python-client
#     (tests/contract/requirements.txt), promtool and Go,
#   - the console's browser test: Debian's chromium and chromedriver, Selenium
#     (tests/console/requirements.txt) and axe-core (tests/console/package-lock.json),
#   - Node.js, npm and jco for the JavaScript scripts (examples/js-transfer/package-lock.json),
#   - cargo test, release profile (one warm build serves tests, demo and benchmarks), with
#     the test-only fault-injection feature for the crash tests (tests/isolation.rs turns on
#     a swap file while it runs, which needs root),
#   - the guest SDK's own tests (native, its own target directory),
#   - short chaos runs: scripts/chaos.sh (20 SIGKILLs during transfer streams) and
#     scripts/server-chaos.sh (10 SIGKILLs of `wasmtx serve` under HTTP load, one server and
#     a three-node cluster); the full runs are in RELIABILITY.md,
# and ends with one line totalling every test binary's results.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-wasip2 >/dev/null
# The chaos and soak scripts read JSON with jq and SQLite files with sqlite3.
if ! command -v jq >/dev/null || ! command -v sqlite3 >/dev/null; then
  apt-get install -y -qq jq sqlite3 >/dev/null
fi
bash scripts/setup-databases.sh
# componentize-py (pinned in python-sdk/requirements.txt) for the Python script tests: a
# virtualenv under target/, rebuilt only when the pin changes; pip caches the downloads.
python_tools=target/toolchains/python
if ! cmp -s python-sdk/requirements.txt "$python_tools/requirements.txt"; then
  python3 -m venv --clear "$python_tools"
  "$python_tools/bin/pip" install --quiet --disable-pip-version-check -r python-sdk/requirements.txt
  cp python-sdk/requirements.txt "$python_tools/requirements.txt"
fi
export WASMTX_COMPONENTIZE_PY=$PWD/$python_tools/bin/componentize-py
# The contract tests' public tools (tests/contract.rs): openapi-spec-validator, schemathesis
# and openapi-python-client pinned in tests/contract/requirements.txt, in a virtualenv under
# target/ rebuilt only when the pins change; promtool (Debian's prometheus) and Go (Debian's
# golang-go, for examples/clients/go).
# CPython 3.11 raises a spurious SystemError ("AST constructor recursion depth mismatch")
# when hypothesis parses sources deep in schemathesis's generator; 3.12 does not, so the
# virtualenv takes a Python 3.12 or later when there is one (pyenv's included).
contract_tools=target/toolchains/contract
contract_python=python3
for candidate in python3 python3.13 python3.12 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[2-9]*/bin/python3; do
  if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
    contract_python=$candidate
    break
  fi
done
# A virtualenv at $2 made by Python $1 with the pins of $3, rebuilt only when they change.
pinned_venv() {
  local python=$1 venv=$2 requirements=$3 stamp
  stamp="$(cat "$requirements"; "$python" --version)"
  if [ "$stamp" != "$(cat "$venv/stamp" 2>/dev/null)" ]; then
    "$python" -m venv --clear "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
    echo "$stamp" > "$venv/stamp"
  fi
}
pinned_venv "$contract_python" "$contract_tools" tests/contract/requirements.txt
export WASMTX_CONTRACT_TOOLS=$PWD/$contract_tools
# The console's browser test (tests/console.rs): Debian's chromium and chromedriver, and
# Selenium pinned in tests/console/requirements.txt.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null
fi
pinned_venv python3 target/toolchains/console tests/console/requirements.txt
export WASMTX_CONSOLE_TOOLS=$PWD/target/toolchains/console
if ! command -v promtool >/dev/null || ! command -v go >/dev/null; then
  apt-get install -y -qq --no-install-recommends prometheus golang-go >/dev/null
fi
# Node.js and npm for the JavaScript script tests; jco (pinned in the example's package.json,
# locked in its package-lock.json) is installed into examples/js-transfer/node_modules.
if ! command -v npm >/dev/null; then
  apt-get install -y -qq nodejs npm >/dev/null
fi
(cd examples/js-transfer && npm ci --no-audit --no-fund --silent)
# axe-core (locked in tests/console/package-lock.json), run in the browser on every console page.
(cd tests/console && npm ci --no-audit --no-fund --silent)
export RUST_BACKTRACE=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --release --workspace --features wasmtx/fault-injection "$@" 2>&1 | tee "$log"
(cd guest-sdk && CARGO_TARGET_DIR=../target/guest-sdk cargo test --release) 2>&1 | tee -a "$log"
# The short chaos runs use the binary the tests just built (fault injection stays off unless
# asked); each counts as one test.
chaos_failed=0
short_run() { # name, then the command
  local name=$1
  shift
  if "$@" 2>&1 | tee -a "$log"; then
    echo "test result: ok. 1 passed; 0 failed; 0 ignored ($name)" | tee -a "$log"
  else
    echo "test result: FAILED. 0 passed; 1 failed; 0 ignored ($name)" | tee -a "$log"
    chaos_failed=1
  fi
}
if [ $# -eq 0 ]; then
  wasmtx=${CARGO_TARGET_DIR:-target}/release/wasmtx
  short_run "scripts/chaos.sh, 20 kills" \
    env KILLS=20 CHECK_EVERY=0 WASMTX="$wasmtx" WORK="$(mktemp -d)" bash scripts/chaos.sh
  short_run "scripts/server-chaos.sh, 10 kills of one server" \
    env MODE=single KILLS=10 WASMTX="$wasmtx" bash scripts/server-chaos.sh
  short_run "scripts/server-chaos.sh, 10 kills in a three-node cluster" \
    env MODE=cluster KILLS=10 WASMTX="$wasmtx" bash scripts/server-chaos.sh
fi
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$chaos_failed"
