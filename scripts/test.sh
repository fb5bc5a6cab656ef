#!/usr/bin/env bash
# README's test command: prepares everything the tests need, then runs them all.
#   - the wasm32-wasip2 target for guest scripts,
#   - PostgreSQL and MariaDB (scripts/setup-databases.sh),
#   - componentize-py for the Python scripts (python-sdk/requirements.txt),
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
# Node.js and npm for the JavaScript script tests; jco (pinned in the example's package.json,
# locked in its package-lock.json) is installed into examples/js-transfer/node_modules.
if ! command -v npm >/dev/null; then
  apt-get install -y -qq nodejs npm >/dev/null
fi
(cd examples/js-transfer && npm ci --no-audit --no-fund --silent)
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
