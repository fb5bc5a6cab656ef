#!/usr/bin/env bash
# Reproduces the two-phase-commit figures of BENCHMARKS.md: transfers between a PostgreSQL
# and a MariaDB participant, every worker on its own pair of accounts (no lock contention
# between workers), the WASM script against its native twin and plain single-phase commits,
# interleaved in one run.
#   CONCURRENCY (16), TRANSACTIONS per variant (20000) and EXTRA (more `wasmtx bench`
#   flags) can be set in the environment. PIN=1 runs the "separate cores" layout of
#   BENCHMARKS.md: the database servers on the first core and wasmtx on the others, so
#   that the host's CPU does not compete with theirs (restored when the run ends).
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-wasip2 >/dev/null
bash scripts/setup-databases.sh >/dev/null
concurrency=${CONCURRENCY:-16}
transactions=${TRANSACTIONS:-20000}

psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS wasmtx_bench WITH (FORCE)" -c "CREATE DATABASE wasmtx_bench"
psql -h 127.0.0.1 -U postgres -d wasmtx_bench -qc \
  "CREATE TABLE accounts (id VARCHAR(64) PRIMARY KEY, balance BIGINT NOT NULL);
   INSERT INTO accounts SELECT 'acct-' || n, 1000000000 FROM generate_series(0, $concurrency - 1) n"
mariadb -h 127.0.0.1 -u root -D mysql -e \
  "DROP DATABASE IF EXISTS wasmtx_bench; CREATE DATABASE wasmtx_bench;
   CREATE TABLE wasmtx_bench.accounts (id VARCHAR(64) PRIMARY KEY, balance BIGINT NOT NULL) ENGINE=InnoDB;
   INSERT INTO wasmtx_bench.accounts SELECT CONCAT('acct-', seq), 1000000000 FROM wasmtx_bench.seq_0_to_$((concurrency - 1))"

cargo build --release --quiet
export WASMTX_STATE_DIR=${WASMTX_STATE_DIR:-$(mktemp -d)}
pin=()
if [ "${PIN:-0}" = 1 ]; then
  last=$(($(nproc) - 1))
  [ "$last" -ge 1 ] || { echo "PIN=1 needs two cores or more" >&2; exit 2; }
  # Database processes, and through their parents the backends they start later.
  pin_databases() {
    for pid in $(pgrep -x postgres; pgrep -x mariadbd; pgrep -x mysqld); do
      taskset -a -cp "$1" "$pid" >/dev/null || true  # it may have just exited
    done
  }
  trap 'pin_databases 0-$last' EXIT
  pin_databases 0
  pin=(taskset -c "1-$last")
fi
"${pin[@]}" ./target/release/wasmtx bench examples/transfer \
  -p a=postgres://postgres@127.0.0.1:5432/wasmtx_bench \
  -p b=mysql://root@127.0.0.1:3306/wasmtx_bench \
  --concurrency "$concurrency" --transactions "$transactions" \
  --compare native --compare plain \
  --input '{"from":{"participant":"a","account":"acct-{worker}"},"to":{"participant":"b","account":"acct-{worker}"},"amount":1}' \
  ${EXTRA:-}
