#!/usr/bin/env bash
# README's test command: prepares everything the tests need, then runs them all.
#   - the wasm32-wasip2 target for guest scripts,
#   - PostgreSQL and MariaDB (scripts/setup-databases.sh),
#   - cargo test, release profile (one warm build serves tests, demo and benchmarks), with
#     the test-only fault-injection feature for the crash tests.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-wasip2 >/dev/null
bash scripts/setup-databases.sh
export RUST_BACKTRACE=0
cargo test --release --workspace --features wasmtx/fault-injection "$@"
