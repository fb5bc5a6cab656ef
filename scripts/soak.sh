#!/usr/bin/env bash
# Soak test: one `wasmtx bench` process runs CONCURRENCY (64) concurrent transfers between
# PostgreSQL and MariaDB (examples/transfer, every worker on its own pair of accounts) for
# SOAK_SECS (600) seconds, and every INTERVAL (10) seconds this samples the process's
#   - resident memory (VmRSS in /proc/PID/status),
#   - open file descriptors (/proc/PID/fd),
#   - open TCP connections to 5432 and 3306 (its sockets' inodes in /proc/net/tcp*),
#   - the decision log's size ($WASMTX_STATE_DIR/decisions-soak.log),
#   - the transfers committed so far (from MariaDB's balances) and the rate since the last
#     sample.
# It prints a table of the samples, the bench's own summary, the prepared branches left at
# the end (0 expected) and a verdict. "Flat" means: the baseline is the first sample taken
# at or after WARMUP (60) seconds; over the last third of the samples, the host's RSS stays
# within RSS_PCT (10) % of the baseline, fds within FD_SLACK (4) of it, connections at most
# the baseline's, and the decision log below LOG_MAX (2 MiB: it compacts at 1 MiB). The
# host's RSS is VmRSS minus the benchmark's own latency record, which keeps 16 bytes per
# transaction by design (BENCHMARKS.md, section 3); both are printed. It also checks that
# the total over both databases is unchanged. Exit 1 if anything is not flat or a check
# fails, if no transfer committed, or if a database could not be queried.
#
# SERVER=1 soaks `wasmtx serve` instead: CONCURRENCY clients (scripts/server_load.py) send
# keyed invokes of tests/guests/ledger (one row per request on PostgreSQL and MariaDB) over
# HTTP, and the samples are the server's, plus its history file (server-soak.sqlite and its
# WAL), kept HISTORY_SECS (60) s so that its pruning runs during the soak. Work done is
# counted from MariaDB's ledger; at the end every request answered 200 must be on both
# databases, none partial, none twice (server_load.py check), and the history must be flat
# too (last third within HISTORY_PCT (50) % of the baseline: its rows are kept for a time,
# not a count). The baseline is taken at WARMUP (120) s in this mode, past the retention.
# Databases: `wasmtx_soak` on PostgreSQL 127.0.0.1:5432 and MariaDB 127.0.0.1:3306,
# recreated on each run; the servers are left running. On exit the bench process is stopped
# and `wasmtx recover` resolves anything it left.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

soak_secs=${SOAK_SECS:-600}
concurrency=${CONCURRENCY:-64}
interval=${INTERVAL:-10}
server_mode=${SERVER:-0}
if [ "$server_mode" = 1 ]; then warmup=${WARMUP:-120}; else warmup=${WARMUP:-60}; fi
history_secs=${HISTORY_SECS:-60}
history_pct=${HISTORY_PCT:-50}
rss_pct=${RSS_PCT:-10}
fd_slack=${FD_SLACK:-4}
log_max=${LOG_MAX:-2097152}
node=soak
db=wasmtx_soak
initial=1000000000

work=$(mktemp -d /tmp/wasmtx-soak.XXXXXX)
export WASMTX_NODE=$node WASMTX_STATE_DIR=$work/state WASMTX_CACHE_DIR=$work/cache RUST_BACKTRACE=0
mkdir -p "$WASMTX_STATE_DIR"
pg_url=postgres://postgres@127.0.0.1:5432/$db
my_url=mysql://root@127.0.0.1:3306/$db
participants=(-p "a=$pg_url" -p "b=$my_url")
# pg, my, branches, count_branches (of node $node).
source scripts/prepared.sh

prepare_run # $target, $wasmtx
guest=examples/transfer
[ "$server_mode" = 1 ] && guest=tests/guests/ledger
cargo build --release --quiet --target wasm32-wasip2 --manifest-path "$guest/Cargo.toml" \
  --target-dir "$target/guests"
script=$target/guests/wasm32-wasip2/release/$(basename "$guest").wasm

pg -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
pg -d "$db" -c "CREATE TABLE accounts (id VARCHAR(64) PRIMARY KEY, balance BIGINT NOT NULL);
  INSERT INTO accounts SELECT 'acct-' || n, $initial FROM generate_series(0, $concurrency - 1) n"
my -e "DROP DATABASE IF EXISTS $db; CREATE DATABASE $db;
  CREATE TABLE $db.accounts (id VARCHAR(64) PRIMARY KEY, balance BIGINT NOT NULL) ENGINE=InnoDB;
  INSERT INTO $db.accounts SELECT CONCAT('acct-', seq), $initial FROM $db.seq_0_to_$((concurrency - 1))"

pg -d "$db" -c "CREATE TABLE ledger (id VARCHAR(64) NOT NULL)"
my -e "CREATE TABLE $db.ledger (id VARCHAR(64) NOT NULL) ENGINE=InnoDB"

pid= load=
cleanup() {
  status=$?
  if [ -n "$load" ] && kill -0 "$load" 2>/dev/null; then kill -TERM "$load" 2>/dev/null || true; fi
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  if [ -n "$(branches 2>/dev/null)" ]; then
    sleep 36 # past the default 30 s deadline and recovery's 5 s margin
    "$wasmtx" recover "${participants[@]}" >/dev/null 2>&1 || echo "soak: recovery on exit did not resolve everything" >&2
  fi
  rm -rf "$work"
  exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

token=soak-token
if [ "$server_mode" = 1 ]; then
  cat >"$work/server.toml" <<TOML
node = "$node"
state_dir = "$WASMTX_STATE_DIR"
cache_dir = "$WASMTX_CACHE_DIR"
[server]
concurrency = 16
max_connections = 16
queue_timeout_ms = 30000
recovery_interval_ms = 1000
history_retention_hours = $(awk -v s="$history_secs" 'BEGIN { print s / 3600 }')
allow_superuser = ["a", "b"]
[[server.tokens]]
name = "soak"
sha256 = "$(printf %s "$token" | sha256sum | cut -d' ' -f1)"
scopes = ["admin", "invoke", "read"]
[participants]
a = "$pg_url"
b = "$my_url"
TOML
  "$wasmtx" serve --config "$work/server.toml" --listen 127.0.0.1:0 >"$work/serve.out" 2>"$work/serve.err" &
  pid=$!
  for _ in $(seq 1 600); do
    url=$(sed -n 's/^listening on //p' "$work/serve.out" 2>/dev/null || true)
    [ -n "$url" ] && [ "$(curl -s -o /dev/null -w '%{http_code}' "$url/readyz")" = 200 ] && break
    kill -0 "$pid" 2>/dev/null || { echo "soak: wasmtx serve exited:" >&2; tail -5 "$work/serve.err" >&2; exit 1; }
    sleep 0.1
  done
  answer=$(curl -s -w ' %{http_code}' -X PUT -H "Authorization: Bearer $token" --data-binary @"$script" \
    "$url/v1/plugins/ledger/versions/1.0.0")
  [ "${answer##* }" = 201 ] || { echo "soak: publish: $answer" >&2; exit 1; }
  python3 scripts/server_load.py run --urls "soak=$url" --token "$token" --seconds "$soak_secs" \
    --workers "$concurrency" --keyed 1 --variant two --timeout-ms 5000 --log "$work/requests.jsonl" \
    --give-up 30 &
  load=$!
else
  "$wasmtx" bench "$script" "${participants[@]}" --json --concurrency "$concurrency" \
    --duration "$soak_secs" \
    --input '{"from":{"participant":"a","account":"acct-{worker}"},"to":{"participant":"b","account":"acct-{worker}"},"amount":1}' \
    >"$work/bench.json" 2>"$work/bench.err" &
  pid=$!
  load=$pid
fi

# Open TCP connections of $pid to a port: its socket inodes joined with /proc/net/tcp{,6}.
connections() { # port
  local hex
  hex=$(printf '%04X' "$1")
  { find "/proc/$pid/fd" -lname 'socket:*' -printf '%l\n' 2>/dev/null | sed 's/socket:\[\(.*\)\]/S \1/'
    awk 'FNR > 1 { print "T", $3, $4, $10 }' /proc/net/tcp /proc/net/tcp6; } |
    awk -v port=":$hex" '$1 == "S" { mine[$2] = 1; next }
      $1 == "T" && $4 in mine && substr($2, length($2) - 4) == port && $3 == "01" { n++ }
      END { print n + 0 }'
}
samples=$work/samples.txt
: >"$samples"
started=$(date +%s)
printf '%6s %10s %10s %5s %4s %7s %12s %12s %9s %6s\n' "t (s)" "VmRSS KiB" "host KiB" "fds" "pg" "mariadb" "log (bytes)" "history" "done" "tx/s"
prev_t=0 prev_n=0
while kill -0 "$load" 2>/dev/null; do
  t=$(($(date +%s) - started))
  rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null) || break
  [ -n "$rss" ] || break
  fds=$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
  pgc=$(connections 5432)
  myc=$(connections 3306)
  logsize=$(stat -c %s "$WASMTX_STATE_DIR/decisions-$node.log" 2>/dev/null || echo 0)
  history=$(cat "$WASMTX_STATE_DIR/server-$node.sqlite" "$WASMTX_STATE_DIR/server-$node.sqlite-wal" 2>/dev/null | wc -c)
  if [ "$server_mode" = 1 ]; then
    n=$(my -e "SELECT count(*) FROM $db.ledger") || { echo "soak: cannot count MariaDB's ledger" >&2; exit 1; }
    host=$rss
  else
    sum=$(my -e "SELECT sum(balance) FROM $db.accounts") || { echo "soak: cannot read MariaDB's balances" >&2; exit 1; }
    n=$((sum - concurrency * initial))
    host=$((rss - n * 16 / 1024))
  fi
  rate=$(awk -v a="$n" -v b="$prev_n" -v t="$t" -v u="$prev_t" 'BEGIN { print (t > u) ? int((a - b) / (t - u)) : 0 }')
  prev_t=$t prev_n=$n
  echo "$t $host $fds $pgc $myc $logsize $rss $n $history" >>"$samples"
  printf '%6d %10d %10d %5d %4d %7d %12d %12d %9d %6d\n' "$t" "$rss" "$host" "$fds" "$pgc" "$myc" "$logsize" "$history" "$n" "$rate"
  sleep "$interval"
done
status=0
if [ "$server_mode" = 1 ]; then
  wait "$load" || status=$?
  load=
  [ "$status" -eq 0 ] || { echo "soak: the load (server_load.py) failed (exit $status)" >&2; exit 1; }
  pg -d "$db" -c "SELECT id FROM ledger" >"$work/ledger-a.txt" || { echo "soak: cannot read PostgreSQL's ledger" >&2; exit 1; }
  my -e "SELECT id FROM $db.ledger" >"$work/ledger-b.txt" || { echo "soak: cannot read MariaDB's ledger" >&2; exit 1; }
  checked=0
  python3 scripts/server_load.py check --no-kills --log "$work/requests.jsonl" \
    --ledger "a=$work/ledger-a.txt" --ledger "b=$work/ledger-b.txt" | sed 's/^/check: /' || checked=$?
  commits=$(jq -s 'map(select(.status == 200)) | length' "$work/requests.jsonl")
  errors=$(jq -s 'map(select(.status != 200)) | length' "$work/requests.jsonl")
  echo "server: $commits answered 200, $errors other answers, $(grep -c ERROR "$work/serve.err" || true) ERROR lines in its log"
  n_final=$(wc -l <"$work/ledger-b.txt")
  total=0 expected=0
else
  wait "$pid" || status=$?
  pid= load=
  if [ "$status" -ne 0 ]; then
    echo "soak: wasmtx bench failed (exit $status):" >&2
    cat "$work/bench.json" >&2
    tail -20 "$work/bench.err" >&2
    exit 1
  fi
  jq -r '"bench: \(.variants[0] | "\(.commits) committed, \(.aborts) aborted, \(.errors) errors, \(.tx_per_sec | floor) tx/s, p50 \(.p50_ms * 10 | round / 10) ms, p99 \(.p99_ms * 10 | round / 10) ms"); its own RSS \(.rss_kib_before) KiB after warm-up, \(.rss_kib_after) KiB at the end"' \
    "$work/bench.json"
  errors=$(jq -e '.variants[0].errors' "$work/bench.json")
  commits=$(jq -e '.variants[0].commits' "$work/bench.json")
  checked=0
  on_pg=$(pg -d "$db" -c "SELECT sum(balance) FROM accounts") || { echo "soak: cannot read PostgreSQL's balances" >&2; exit 1; }
  on_my=$(my -e "SELECT sum(balance) FROM $db.accounts") || { echo "soak: cannot read MariaDB's balances" >&2; exit 1; }
  total=$((on_pg + on_my))
  expected=$((2 * concurrency * initial))
  n_final=$((on_my - concurrency * initial))
fi
left=$(count_branches) || { echo "soak: cannot count the prepared branches left" >&2; exit 1; }

# The verdict.
read -r base_t base_rss base_fds base_pg base_my max_rss max_fds max_pg max_my max_log n_last base_raw max_raw base_hist max_hist < <(
  awk -v warmup="$warmup" '{ t[NR] = $1; rss[NR] = $2; fds[NR] = $3; pg[NR] = $4; my[NR] = $5; lg[NR] = $6; raw[NR] = $7; hi[NR] = $9 }
    END {
      for (i = 1; i <= NR && t[i] < warmup; i++) {}
      if (i > NR) i = NR
      from = NR - int(NR / 3) + 1; if (from <= i) from = i + 1; if (from > NR) from = NR
      for (j = from; j <= NR; j++) {
        if (rss[j] > mr) mr = rss[j]; if (fds[j] > mf) mf = fds[j]; if (raw[j] > rawmax) rawmax = raw[j]
        if (pg[j] > mp) mp = pg[j]; if (my[j] > mm) mm = my[j]; if (hi[j] > mh) mh = hi[j]
      }
      for (j = 1; j <= NR; j++) if (lg[j] > ml) ml = lg[j]
      print t[i], rss[i], fds[i], pg[i], my[i], mr, mf, mp, mm, ml, NR - from + 1, raw[i], rawmax, hi[i], mh + 0 }' "$samples")
problems=()
[ "$max_rss" -le $((base_rss * (100 + rss_pct) / 100)) ] ||
  problems+=("host RSS grew: last third's max $max_rss KiB against $base_rss KiB at ${base_t}s (more than $rss_pct %)")
[ "$max_fds" -le $((base_fds + fd_slack)) ] ||
  problems+=("fds grew: last third's max $max_fds against $base_fds at ${base_t}s")
[ "$max_pg" -le "$base_pg" ] && [ "$max_my" -le "$base_my" ] ||
  problems+=("connections grew: last third's max $max_pg/$max_my against $base_pg/$base_my at ${base_t}s")
[ "$max_log" -le "$log_max" ] || problems+=("decision log reached $max_log bytes (limit $log_max)")
[ "$left" -eq 0 ] || problems+=("$left prepared branches left: $(branches | paste -sd' ')")
[ "$total" -eq "$expected" ] || problems+=("total $total, expected $expected")
[ "$errors" -eq 0 ] || problems+=("$errors transactions ended in an error (in doubt, a participant failure, or an answer other than 200)")
[ "$commits" -gt 0 ] && [ "$n_final" -gt 0 ] ||
  problems+=("no work done: $commits transactions committed by the load's count, $n_final by the databases")
[ "$checked" -eq 0 ] || problems+=("the answers do not match the databases (check: above)")
if [ "$server_mode" = 1 ]; then
  [ "$max_hist" -le $((base_hist * (100 + history_pct) / 100)) ] ||
    problems+=("history grew: last third's max $max_hist bytes against $base_hist at ${base_t}s (more than $history_pct %)")
fi

pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.1f", (a - b) * 100 / b }'; }
echo
echo "soak summary ($soak_secs s, $concurrency concurrent, $(wc -l <"$samples") samples every ${interval}s)"
printf '  %-26s %s\n' \
  "baseline (t=${base_t}s)" "host RSS $base_rss KiB (VmRSS $base_raw), $base_fds fds, $base_pg + $base_my connections (pg + mariadb)" \
  "last third ($n_last samples)" "host RSS max $max_rss KiB ($(pct "$max_rss" "$base_rss") %; VmRSS max $max_raw, $(pct "$max_raw" "$base_raw") %), fds max $max_fds, connections max $max_pg + $max_my" \
  "decision log" "max $max_log bytes" \
  "history (server)" "$base_hist bytes at baseline, last third's max $max_hist" \
  "prepared branches left" "$left"
[ "$server_mode" = 1 ] || printf '  %-26s %s\n' "total" "$total (expected $expected)"
if [ ${#problems[@]} -gt 0 ]; then
  echo "verdict: NOT FLAT or FAILED"; printf '  %s\n' "${problems[@]}"
  exit 1
fi
echo "verdict: flat after warm-up (host RSS within $rss_pct %, fds within $fd_slack, connections not above the baseline, log bounded), nothing left in doubt"
