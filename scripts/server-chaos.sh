#!/usr/bin/env bash
# Server crash test: SIGKILLs `wasmtx serve` at random moments under HTTP load, keyed and
# unkeyed, restarts it, and checks every answer against what the databases hold.
#
# Single mode (MODE=single): one server, participants PostgreSQL (a), MariaDB (b) and an
# SQLite file (c); requests go to a+b (the decision in the decision log) or a+b+c (the
# SQLite group commits last: its commit is the decision). Each round starts the server (or
# restarts it after the kill), waits for /readyz (start-up recovery resolves what the dead
# process left), runs scripts/server_load.py for a while and SIGKILLs the server MIN_MS..MAX_MS
# after the load started.
#
# Cluster mode (MODE=cluster): three nodes sharing a PostgreSQL decision log (short leases),
# participants a+b; clients spread over the nodes and fail over to another node when theirs
# does not answer; each round kills a random node, and the nodes that are down are started
# again at the next round.
#
# The guest, tests/guests/ledger, writes one row with the request's id on every participant
# of its transaction. At the end every node is started, every keyed request is sent again
# (same key, same body, to the node that took it), each node's recovery has finished, and
# server_load.py check verifies:
#   - every request answered 200 is on every participant of its request;
#   - no request is on some of its participants and not the others (no partial transaction);
#   - no request is on a participant twice (a repeated key never ran twice);
#   - a repeated keyed request answers the outcome the databases hold;
#   - no branch of the nodes is left prepared;
#   - the run did work: requests committed, and some were in flight at a kill.
#
# Knobs: MODE (single), KILLS (200 single / 100 cluster), MIN_MS, MAX_MS (300, 3000),
# WORKERS (8), KEYED (0.5, the share of keyed requests), TIMEOUT_MS (1000, each
# transaction's deadline), SEED, WORK (/tmp/wasmtx-server-chaos), WASMTX (the binary).
# Databases: wasmtx_schaos (and wasmtx_schaos_log in cluster mode) on PostgreSQL and
# MariaDB, recreated on each run.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

mode=${MODE:-single}
case $mode in
  single) kills=${KILLS:-200} ;;
  cluster) kills=${KILLS:-100} ;;
  *) echo "MODE must be single or cluster" >&2; exit 2 ;;
esac
min_ms=${MIN_MS:-300}
max_ms=${MAX_MS:-3000}
workers=${WORKERS:-8}
keyed=${KEYED:-0.5}
timeout_ms=${TIMEOUT_MS:-1000}
work=${WORK:-/tmp/wasmtx-server-chaos}
[ -n "${SEED:-}" ] && RANDOM=$SEED
db=wasmtx_schaos
token=server-chaos-token
token_sha=$(printf %s "$token" | sha256sum | cut -d' ' -f1)
if [ "$mode" = single ]; then nodes=(schaos); else nodes=(sc1 sc2 sc3); fi

source scripts/prepared.sh # pg, my, branches (of $node)
log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*"; }

# --- set-up ---------------------------------------------------------------------------
prepare_run # $target, $wasmtx
cargo build --release --quiet --target wasm32-wasip2 --manifest-path tests/guests/ledger/Cargo.toml \
  --target-dir "$target/guests"
ledger_wasm=$target/guests/wasm32-wasip2/release/ledger.wasm

rm -rf "$work"
mkdir -p "$work/logs"
lite=$work/c.db
# Branches an earlier run that was itself killed left prepared would block dropping the
# databases; that run's data goes anyway, so they are rolled back.
for node in "${nodes[@]}"; do
  for gid in $(pg -d postgres -c "SELECT gid FROM pg_prepared_xacts WHERE gid LIKE 'wtx.$node.%' AND database = '$db'"); do
    pg -d "$db" -c "ROLLBACK PREPARED '$gid'"
  done
  my -e "XA RECOVER" | awk -v p="wtx.$node." 'index($4, p) == 1 { print $2, $4 }' |
    while read -r gtrid_len data; do
      my -e "XA ROLLBACK '${data:0:$gtrid_len}', '${data:$gtrid_len}'"
    done
done
pg -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" \
  -c "DROP DATABASE IF EXISTS ${db}_log WITH (FORCE)" -c "CREATE DATABASE ${db}_log"
pg -d "$db" -c "CREATE TABLE ledger (id VARCHAR(64) NOT NULL)"
my -e "DROP DATABASE IF EXISTS $db; CREATE DATABASE $db;
       CREATE TABLE $db.ledger (id VARCHAR(64) NOT NULL) ENGINE=InnoDB"
sqlite3 "$lite" "CREATE TABLE ledger (id TEXT NOT NULL);"

config_of() { # node: writes its configuration file, prints its path
  local node=$1 file=$work/$1.toml
  {
    echo "node = \"$node\""
    echo "state_dir = \"$work/state-$node\""
    echo "cache_dir = \"$work/cache\""
    echo "[limits]"
    echo "timeout_secs = $(awk -v ms="$timeout_ms" 'BEGIN { print ms / 1000 }')"
    echo "[server]"
    echo "concurrency = 16"
    echo "max_timeout_ms = 60000"
    echo "recovery_interval_ms = 1000"
    echo 'allow_superuser = ["a", "b"]'
    echo "[[server.tokens]]"
    echo 'name = "chaos"'
    echo "sha256 = \"$token_sha\""
    echo 'scopes = ["admin", "invoke", "read"]'
    if [ "$mode" = cluster ]; then
      echo "[decision_log]"
      echo "url = \"postgres://postgres@127.0.0.1:5432/${db}_log\""
      echo "[cluster]"
      echo "lease_ttl_ms = 2000"
      echo "takeover_grace_ms = 1000"
    fi
    echo "[participants]"
    echo "a = \"postgres://postgres@127.0.0.1:5432/$db\""
    echo "b = \"mysql://root@127.0.0.1:3306/$db\""
    [ "$mode" = cluster ] || echo "c = \"sqlite://$lite\""
  } >"$file"
  echo "$file"
}

declare -A pid url
start_node() { # node: starts it, records its pid and URL
  local node=$1 out=$work/logs/$1.out line=
  # Gone before the new process starts: its first line must not be read from the old file.
  rm -f "$out"
  "$wasmtx" serve --config "$(config_of "$node")" --listen 127.0.0.1:0 \
    >"$out" 2>>"$work/logs/$node.err" &
  pid[$node]=$!
  for _ in $(seq 1 300); do
    line=$(head -1 "$out" 2>/dev/null || true)
    [ -n "$line" ] && break
    kill -0 "${pid[$node]}" 2>/dev/null || { echo "node $node exited at start:" >&2; tail -5 "$work/logs/$node.err" >&2; exit 1; }
    sleep 0.1
  done
  url[$node]=${line#listening on }
}
wait_ready() { # node
  local node=$1
  for _ in $(seq 1 600); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "${url[$node]}/readyz")" = 200 ] && return 0
    sleep 0.1
  done
  echo "node $node not ready after 60 s:" >&2; tail -5 "$work/logs/$node.err" >&2; exit 1
}
alive() { kill -0 "${pid[$1]:-0}" 2>/dev/null; }
node_urls() { # name=url,… of every node, as server_load.py takes them
  local list= node
  for node in "${nodes[@]}"; do list+="$node=${url[$node]},"; done
  echo "${list%,}"
}

cleanup() {
  status=$?
  for node in "${nodes[@]}"; do alive "$node" && kill -KILL "${pid[$node]}" 2>/dev/null || true; done
  wait 2>/dev/null || true
  exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for node in "${nodes[@]}"; do start_node "$node"; done
for node in "${nodes[@]}"; do wait_ready "$node"; done
status=$(curl -s -o "$work/logs/publish.json" -w '%{http_code}' -X PUT -H "Authorization: Bearer $token" \
  --data-binary @"$ledger_wasm" "${url[${nodes[0]}]}/v1/plugins/ledger/versions/1.0.0")
[ "$status" = 201 ] || { echo "publish: $status $(cat "$work/logs/publish.json")" >&2; exit 1; }

# --- the rounds -------------------------------------------------------------------------
log "server chaos ($mode): $kills kills, $workers workers, ${keyed} keyed, kill after ${min_ms}-${max_ms} ms, deadline ${timeout_ms} ms"
started=$(date +%s)
requests=$work/requests.jsonl
: >"$requests"
variant=mixed
[ "$mode" = single ] || variant=two
for round in $(seq 1 "$kills"); do
  for node in "${nodes[@]}"; do
    if ! alive "$node"; then start_node "$node"; fi
  done
  for node in "${nodes[@]}"; do wait_ready "$node"; done
  victim=${nodes[$((RANDOM % ${#nodes[@]}))]}
  ms=$((min_ms + (RANDOM * 32768 + RANDOM) % (max_ms - min_ms + 1)))
  # The load ends by itself: in a single server when nothing answers any more, in a
  # cluster one second after the kill (the clients fail over to the survivors meanwhile).
  # Every request it sent is logged, answered or not.
  python3 scripts/server_load.py run --urls "$(node_urls)" --token "$token" \
    --seconds "$(awk -v ms="$ms" 'BEGIN { print ms / 1000 + 1 }')" \
    --workers "$workers" --keyed "$keyed" --prefix "r$round" --variant "$variant" \
    --timeout-ms "$timeout_ms" --log "$requests" --give-up 1.5 &
  load=$!
  sleep "$(awk -v ms="$ms" 'BEGIN { printf "%.3f", ms / 1000 }')"
  kill -KILL "${pid[$victim]}"
  wait "${pid[$victim]}" 2>/dev/null || true
  wait "$load"
  [ $((round % 20)) -eq 0 ] && log "round $round: $(wc -l <"$requests") requests so far"
done
elapsed=$(($(date +%s) - started))

# --- the end: every node up, keyed requests repeated, recovery finished ------------------
for node in "${nodes[@]}"; do alive "$node" || start_node "$node"; done
for node in "${nodes[@]}"; do wait_ready "$node"; done
# Keyed requests are repeated at the node that took them (at its URL now).
python3 scripts/server_load.py repeat --urls "$(node_urls)" --token "$token" --log "$requests" \
  --workers "$workers" --out "$work/repeats.jsonl"
# Recovery: each node's periodic pass (every second) resolves what its deadline allows.
sleep "$(awk -v ms="$timeout_ms" 'BEGIN { print ms / 1000 + 7 }')"
left=0
for node in "${nodes[@]}"; do
  n=$(count_branches) || { echo "cannot count prepared branches" >&2; exit 1; }
  left=$((left + n))
done
pg -d "$db" -c "SELECT id FROM ledger" >"$work/ledger-a.txt"
my -e "SELECT id FROM $db.ledger" >"$work/ledger-b.txt"
ledgers=(--ledger "a=$work/ledger-a.txt" --ledger "b=$work/ledger-b.txt")
if [ "$mode" = single ]; then
  sqlite3 "$lite" "SELECT id FROM ledger" >"$work/ledger-c.txt"
  ledgers+=(--ledger "c=$work/ledger-c.txt")
fi

echo
echo "server chaos summary ($mode)"
printf '  %-30s %s\n' "kills" "$kills ($((elapsed / 60)) min $((elapsed % 60)) s)"
status=0
python3 scripts/server_load.py check --log "$requests" --repeats "$work/repeats.jsonl" "${ledgers[@]}" |
  sed 's/^/  /' || status=1
printf '  %-30s %s\n' "branches left prepared" "$left"
[ "$left" -eq 0 ] || { echo "FAILED: $left branches left prepared"; status=1; }
[ "$status" -eq 0 ] && echo "all checks passed"
exit "$status"
