#!/usr/bin/env bash
# Crash test: SIGKILLs wasmtx at random moments during streams of concurrent transfers, then
# checks that every transfer was all-or-nothing and that recovery leaves nothing in doubt.
#
# Each round starts one `wasmtx bench` process (CONCURRENCY workers, each on its own
# accounts), kills it with SIGKILL at a random moment MIN_MS..MAX_MS after it started, and
# runs `wasmtx recover --json` with the same node id, state directory and participants. The
# rounds alternate between two streams:
#   two-way:   examples/transfer moves 1 from a PostgreSQL account to a MariaDB account
#              (decision in the decision log);
#   three-way: tests/guests/split-transfer debits 2 from a PostgreSQL account and credits 1
#              to a MariaDB account and 1 to an SQLite file (the SQLite group is the last
#              resource: its commit is the decision).
# Accounts are rotated over SETS sets per stream, so a round's workers rarely wait on rows a
# killed round left prepared (recovery may leave those until their deadline passes).
# Every CHECK_EVERY rounds, and at the end, it waits until every deadline has passed,
# recovers, and checks:
#   - no prepared branch of the node is left (`pg_prepared_xacts`, `XA RECOVER`, gid prefix
#     `wtx.chaos.`);
#   - per account: the PostgreSQL debit equals the MariaDB credit (two-way), or twice the
#     MariaDB credit and twice the SQLite credit (three-way) — a partial transaction breaks it;
#   - the sum over all participants equals the initial total.
# It prints kills, transfers committed (from the balances: a killed process prints nothing),
# the branches recovery found in doubt and what it did with each, partial transactions,
# branches left, and the total; it exits 1 if any check fails, if no transfer committed or
# no branch was ever in doubt (a run that tested nothing), or if a database could not be
# queried.
#
# Knobs (environment):
#   KILLS (1000)        rounds, each ending in a SIGKILL
#   TIME_LIMIT (0)      stop starting rounds after this many seconds (0: no limit); the
#                       summary says how many kills were done
#   CONCURRENCY (8)     workers per bench process
#   MIN_MS, MAX_MS      (200, 3000) when to kill, after the process started
#   VARIANT (mixed)     two | three | mixed (alternate)
#   TIMEOUT (1)         the transactions' deadline in seconds (recovery rolls back an
#                       undecided branch once it is TIMEOUT + 5 s old)
#   CHECK_EVERY (100)   rounds between intermediate checks (0: only at the end)
#   SETS (4)            account sets per stream
#   SEED                seeds bash's $RANDOM, to replay a run's kill times
#   WORK (/tmp/wasmtx-chaos)  state directory (decision log, SQLite files), logs
#   WASMTX              the wasmtx binary to use (default: built here, release)
# Databases: `wasmtx_chaos` on PostgreSQL 127.0.0.1:5432 (postgres) and MariaDB
# 127.0.0.1:3306 (root), recreated on each run. The servers are left running; on exit
# (success, failure or Ctrl-C) the running process is killed and its branches recovered.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

kills=${KILLS:-1000}
time_limit=${TIME_LIMIT:-0}
concurrency=${CONCURRENCY:-8}
min_ms=${MIN_MS:-200}
max_ms=${MAX_MS:-3000}
variant=${VARIANT:-mixed}
timeout=${TIMEOUT:-1}
check_every=${CHECK_EVERY:-100}
sets=${SETS:-4}
work=${WORK:-/tmp/wasmtx-chaos}
[ -n "${SEED:-}" ] && RANDOM=$SEED
node=chaos
db=wasmtx_chaos
initial=1000000000
case $variant in two | three | mixed) ;; *) echo "VARIANT must be two, three or mixed" >&2; exit 2 ;; esac

pg_url=postgres://postgres@127.0.0.1:5432/$db
my_url=mysql://root@127.0.0.1:3306/$db
mkdir -p "$work/state" "$work/cache" "$work/logs"
lite=$work/c.db
export WASMTX_NODE=$node WASMTX_STATE_DIR=$work/state WASMTX_CACHE_DIR=$work/cache RUST_BACKTRACE=0
p2=(-p "a=$pg_url" -p "b=$my_url")
p3=(-p "a=$pg_url" -p "b=$my_url" -p "c=sqlite://$lite")

# pg, my, branches, count_branches (of node $node).
source scripts/prepared.sh
log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*"; }

# --- set-up ---------------------------------------------------------------------------
prepare_run # $target, $wasmtx
for crate in examples/transfer tests/guests/split-transfer; do
  cargo build --release --quiet --target wasm32-wasip2 --manifest-path "$crate/Cargo.toml" \
    --target-dir "$target/guests"
done
transfer_wasm=$target/guests/wasm32-wasip2/release/transfer.wasm
split_wasm=$target/guests/wasm32-wasip2/release/split_transfer.wasm

recover_log=$work/recover.tsv # round, gid, participant, decision, action
: >"$recover_log"
: >"$work/logs/recover-failures.txt"
recover_now() { # round label: one recovery pass over every participant, logged
  local out status=0
  out=$("$wasmtx" recover --json "${p3[@]}" 2>>"$work/logs/recover.err") || status=$?
  if ! jq -e . >/dev/null 2>&1 <<<"$out"; then
    echo "recover printed no JSON (exit $status): $out" >&2
    tail -5 "$work/logs/recover.err" >&2
    return 1
  fi
  jq -r --arg r "$1" '.branches[] | [$r, .gid, .participant, .decision, .action, (.detail // "")] | @tsv' \
    <<<"$out" >>"$recover_log"
  jq -r '.failures[] | "recover: cannot scan \(.participant): \(.message)"' <<<"$out" |
    tee -a "$work/logs/recover-failures.txt" >&2
}
past_deadlines() { sleep "$(awk -v t="$timeout" 'BEGIN { print t + 6 }')"; }

# Branches of this node left by an earlier run that was itself killed: resolve them first
# (its state directory is the same), or the databases cannot be dropped.
earlier=$(count_branches) || exit 1
if [ "$earlier" -gt 0 ]; then
  log "branches of node $node left by an earlier run: recovering them"
  past_deadlines
  recover_now setup || true
fi

pg -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
my -e "DROP DATABASE IF EXISTS $db; CREATE DATABASE $db;
       CREATE TABLE $db.accounts (id VARCHAR(64) PRIMARY KEY, balance BIGINT NOT NULL) ENGINE=InnoDB"
pg -d "$db" -c "CREATE TABLE accounts (id VARCHAR(64) PRIMARY KEY, balance BIGINT NOT NULL)"
rm -f "$lite" "$lite"-* "$work"/state/*
sqlite3 "$lite" "CREATE TABLE accounts (id TEXT PRIMARY KEY, balance INTEGER NOT NULL);"
rows=$(for s in $(seq 0 $((sets - 1))); do for w in $(seq 0 $((concurrency - 1))); do
  echo "t2-s$s-w$w"; echo "t3-s$s-w$w"; done; done)
values=$(sed "s/.*/('&', $initial)/" <<<"$rows" | paste -sd,)
pg -d "$db" -c "INSERT INTO accounts VALUES $values"
my -e "INSERT INTO $db.accounts VALUES $values"
sqlite3 "$lite" "INSERT INTO accounts VALUES $(grep '^t3' <<<"$rows" | sed "s/.*/('&', $initial)/" | paste -sd,);"
n2=$(grep -c '^t2' <<<"$rows")
n3=$(grep -c '^t3' <<<"$rows")
initial_total=$((initial * (2 * n2 + 3 * n3)))

# --- the checks -------------------------------------------------------------------------
balances() { # id balance, sorted by id
  case $1 in
    pg) pg -d "$db" -F ' ' -c "SELECT id, balance FROM accounts ORDER BY id" ;;
    my) my -e "SELECT id, balance FROM $db.accounts ORDER BY id" | tr '\t' ' ' ;;
    lite) sqlite3 -separator ' ' "$lite" "SELECT id, balance FROM accounts ORDER BY id" ;;
  esac | LC_ALL=C sort
}
committed=0 partial=0 total=0 left=0
# Sets committed, partial (accounts whose debits and credits disagree), total, left.
check() {
  local source
  for source in pg my lite; do
    balances "$source" >"$work/$source.txt" || { echo "chaos: cannot read the $source balances" >&2; exit 1; }
  done
  read -r committed partial total < <(
    LC_ALL=C join -a 1 "$work/pg.txt" "$work/my.txt" | LC_ALL=C join -a 1 - "$work/lite.txt" |
      awk -v init="$initial" -v report="$work/partial.txt" '
        { debit = init - $2; credit_b = $3 - init; sum += $2 + $3 }
        /^t2/ { n += credit_b; if (debit != credit_b) { bad++; print > report } }
        /^t3/ { credit_c = $4 - init; sum += $4; n += credit_b
                if (debit != 2 * credit_b || debit != 2 * credit_c) { bad++; print > report } }
        END { printf "%d %d %d\n", n, bad, sum }')
  left=$(count_branches) || { echo "chaos: cannot count the branches left in doubt" >&2; exit 1; }
}
failed_checks() { # prints what failed, if anything
  [ "$committed" -gt 0 ] || echo "no transfer committed: the streams did no work, so nothing was tested"
  [ "$partial" -eq 0 ] || echo "$partial accounts with a partial transaction (pg my lite balances: $work/partial.txt)"
  [ "$left" -eq 0 ] || echo "$left branches left in doubt after recovery: $(branches | paste -sd' ')"
  [ "$total" -eq "$initial_total" ] || echo "total $total, expected $initial_total"
}

# --- the rounds -------------------------------------------------------------------------
pid=
cleanup() {
  status=$?
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  if [ -n "$(branches 2>/dev/null)" ]; then
    past_deadlines
    "$wasmtx" recover "${p3[@]}" >/dev/null 2>&1 || echo "chaos: recovery on exit did not resolve everything: wasmtx recover ${p3[*]}" >&2
  fi
  exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "chaos: $kills kills, $concurrency workers, kill after ${min_ms}-${max_ms} ms, deadline ${timeout}s, variant $variant"
start=$(date +%s)
done_kills=0 early_exits=0 ms_total=0
for round in $(seq 1 "$kills"); do
  if [ "$time_limit" -gt 0 ] && [ $(($(date +%s) - start)) -ge "$time_limit" ]; then
    log "time limit of ${time_limit}s reached after $done_kills kills"
    break
  fi
  set_no=$(((round - 1) / 2 % sets))
  if [ "$variant" = three ] || { [ "$variant" = mixed ] && [ $((round % 2)) -eq 0 ]; }; then
    script=$split_wasm participants=("${p3[@]}")
    input='{"from":{"participant":"a","account":"t3-s'$set_no'-w{worker}"},"to":[{"participant":"b","account":"t3-s'$set_no'-w{worker}"},{"participant":"c","account":"t3-s'$set_no'-w{worker}"}],"amount":1}'
  else
    script=$transfer_wasm participants=("${p2[@]}")
    input='{"from":{"participant":"a","account":"t2-s'$set_no'-w{worker}"},"to":{"participant":"b","account":"t2-s'$set_no'-w{worker}"},"amount":1}'
  fi
  ms=$((min_ms + (RANDOM * 32768 + RANDOM) % (max_ms - min_ms + 1)))
  "$wasmtx" bench "$script" "${participants[@]}" --json --concurrency "$concurrency" \
    --duration 3600 --warmup 1 --timeout "$timeout" --input "$input" \
    >"$work/logs/bench.out" 2>"$work/logs/bench.err" &
  pid=$!
  sleep "$(awk -v ms="$ms" 'BEGIN { printf "%.3f", ms / 1000 }')"
  if kill -KILL "$pid" 2>/dev/null; then
    wait "$pid" 2>/dev/null || true
  else
    status=0; wait "$pid" || status=$?
    early_exits=$((early_exits + 1))
    echo "round $round: wasmtx bench exited by itself (status $status) before the kill:" >&2
    tail -5 "$work/logs/bench.out" "$work/logs/bench.err" >&2
  fi
  pid=
  done_kills=$((done_kills + 1)) ms_total=$((ms_total + ms))
  recover_now "$round"
  if [ "$check_every" -gt 0 ] && [ $((round % check_every)) -eq 0 ] && [ "$round" -lt "$kills" ]; then
    past_deadlines
    recover_now "$round"
    check
    log "after $round kills: $committed transfers committed, $partial partial, $left left in doubt, total $total"
    problems=$(failed_checks)
    [ -z "$problems" ] || { echo "$problems" >&2; exit 1; }
  fi
done
elapsed=$(($(date +%s) - start))

# Final: every deadline passed, one last recovery, the checks.
past_deadlines
recover_now final
check

# Each branch once, with the last thing recovery did to it (a branch left because its
# deadline had not passed is found again by a later pass).
read -r found decided resolved_commit resolved_rollback resolved_already resolved_left resolved_failed < <(
  awk -F '\t' '{ key = $2 " " $3; if (!(key in last)) n++; last[key] = $5; if ($4 == "commit") dec[key] = 1 }
    END { for (k in last) { a[last[k]]++ }; for (k in dec) d++
          printf "%d %d %d %d %d %d %d\n", n, d, a["committed"], a["rolled-back"], a["already-resolved"], a["left-in-doubt"], a["failed"] }' "$recover_log")
failed_attempts=$(awk -F '\t' '$5 == "failed"' "$recover_log" | wc -l)
kills_with_branches=$(awk -F '\t' '$1 ~ /^[0-9]+$/ && !($1 in r) { r[$1] = 1; n++ } END { print n + 0 }' "$recover_log")

echo
echo "chaos summary"
printf '  %-36s %s\n' \
  "kills" "$done_kills of $kills ($((elapsed / 60)) min $((elapsed % 60)) s, mean kill at $((ms_total / (done_kills > 0 ? done_kills : 1))) ms)" \
  "processes that exited before a kill" "$early_exits" \
  "transfers committed" "$committed" \
  "branches found in doubt" "$found ($decided with a COMMIT decision; after $kills_with_branches of the kills)" \
  "  committed by recovery" "$resolved_commit" \
  "  rolled back by recovery" "$resolved_rollback" \
  "  already resolved" "$resolved_already" \
  "  left by recovery" "$resolved_left" \
  "  failed (at the last attempt)" "$resolved_failed" \
  "recovery attempts that failed" "$failed_attempts (a branch may fail and be resolved by a later pass)" \
  "partial transactions" "$partial" \
  "branches left in doubt" "$left" \
  "total" "$total (initial $initial_total)"
problems=$(failed_checks)
[ "$early_exits" -eq 0 ] || problems+="${problems:+$'\n'}$early_exits bench processes exited before their kill"
[ "$found" -gt 0 ] || problems+="${problems:+$'\n'}no branch was ever in doubt: no kill hit a prepared transaction, so recovery resolved nothing"
scan_failures=$(wc -l <"$work/logs/recover-failures.txt")
[ "$scan_failures" -eq 0 ] || problems+="${problems:+$'\n'}$scan_failures recovery passes could not scan a participant ($work/logs/recover-failures.txt)"
[ "$failed_attempts" -eq 0 ] || problems+="${problems:+$'\n'}$failed_attempts recovery attempts failed on a branch, $resolved_failed of them at the last attempt (details in $recover_log): $(awk -F '\t' '$5 == "failed" { print $6; exit }' "$recover_log")"
if [ -n "$problems" ]; then
  echo "FAILED:"; sed 's/^/  /' <<<"$problems"
  exit 1
fi
echo "all checks passed"
