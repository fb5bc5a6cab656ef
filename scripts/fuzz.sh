#!/usr/bin/env bash
# Runs the property tests on hostile input longer than the test suite does:
#   - the library's properties (statement policy, SQLite qualifier, decision-log frame
#     parser, WIT value conversion) with PROPTEST_CASES cases each (default 200000);
#   - tests/hostile_input.rs (the CLI on hostile scripts, input and configuration), whose
#     random cases are drawn afresh on every run, ROUNDS times (default 20).
# A failure prints the input that found it; proptest also saves its seed under
# host/proptest-regressions/, to be committed with the fix.
# Usage: scripts/fuzz.sh            CASES=1000000 ROUNDS=50 scripts/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export RUST_BACKTRACE=0
cases=${CASES:-200000}
rounds=${ROUNDS:-20}
test=(cargo test --release -p wasmtx --features wasmtx/fault-injection)
PROPTEST_CASES=$cases "${test[@]}" --lib proptests
"${test[@]}" --test hostile_input --no-run
for round in $(seq 1 "$rounds"); do
    echo "hostile_input round $round of $rounds"
    "${test[@]}" --test hostile_input -q
done
