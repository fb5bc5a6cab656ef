#!/usr/bin/env bash
# README's test command: prepares everything the tests need, then runs them all.
#   - the wasm32-wasip2 target for guest scripts,
#   - PostgreSQL and MariaDB (scripts/setup-databases.sh),
#   - cargo test, release profile (one warm build serves tests, demo and benchmarks), with
#     the test-only fault-injection feature for the crash tests,
#   - the guest SDK's own tests (native, its own target directory),
# and ends with one line totalling every test binary's results.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-wasip2 >/dev/null
bash scripts/setup-databases.sh
export RUST_BACKTRACE=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --release --workspace --features wasmtx/fault-injection "$@" 2>&1 | tee "$log"
(cd guest-sdk && CARGO_TARGET_DIR=../target/guest-sdk cargo test --release) 2>&1 | tee -a "$log"
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
