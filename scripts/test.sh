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
#   - a short chaos run (scripts/chaos.sh, 20 SIGKILLs during transfer streams; the full
#     1,000-kill run is in RELIABILITY.md),
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
# The chaos run uses the binary the tests just built (fault injection stays off unless asked).
chaos_failed=0
if [ $# -eq 0 ]; then
  if KILLS=20 CHECK_EVERY=0 WASMTX=${CARGO_TARGET_DIR:-target}/release/wasmtx WORK=$(mktemp -d) \
    bash scripts/chaos.sh 2>&1 | tee -a "$log"; then
    echo "test result: ok. 1 passed; 0 failed; 0 ignored (scripts/chaos.sh, 20 kills)" | tee -a "$log"
  else
    echo "test result: FAILED. 0 passed; 1 failed; 0 ignored (scripts/chaos.sh, 20 kills)" | tee -a "$log"
    chaos_failed=1
  fi
fi
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$chaos_failed"
