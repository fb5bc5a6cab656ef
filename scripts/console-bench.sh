#!/usr/bin/env bash
# How fast the console's pages answer with a large history: a `wasmtx serve` on two SQLite
# files runs a few real transfers (one aborted), its history is then grown to ROWS rows
# (copies of those, new gids, start times spread over the last two hours) with sqlite3, and
# every page is fetched TIMES times by curl with a signed-in session. Prints each page's
# median and slowest time.
#   ROWS=100000 TIMES=20 scripts/console-bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-100000}
TIMES=${TIMES:-20}
wasmtx=${WASMTX:-target/release/wasmtx}
[ -x "$wasmtx" ] || cargo build --release --quiet
command -v sqlite3 >/dev/null || apt-get install -y -qq sqlite3 >/dev/null
work=$(mktemp -d)
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

token=console-bench-token
"$wasmtx" demo --dir "$work/bank" >/dev/null
cat > "$work/wasmtx.toml" <<EOF
state_dir = "$work/state"
node = "bench"
[participants]
bank_a = "sqlite://$work/bank/bank_a.db"
bank_b = "sqlite://$work/bank/bank_b.db"
[[server.tokens]]
name = "ops"
sha256 = "$(printf %s "$token" | sha256sum | cut -d' ' -f1)"
scopes = ["admin", "invoke", "read"]
EOF

start_server() {
  "$wasmtx" serve --config "$work/wasmtx.toml" --listen 127.0.0.1:0 > "$work/out" 2> "$work/err" &
  server_pid=$!
  for _ in $(seq 100); do
    url=$(sed -n 's/^listening on //p' "$work/out")
    [ -n "$url" ] && curl -sf "$url/readyz" >/dev/null && return
    sleep 0.1
  done
  cat "$work/err"
  exit 1
}
stop_server() {
  kill "$server_pid"
  wait "$server_pid" || true
  server_pid=
}

start_server
WASMTX_SERVER=$url WASMTX_TOKEN=$token "$wasmtx" publish examples/transfer --name transfer --version 1.0.0 >/dev/null
for amount in 1 2 3 5000; do
  WASMTX_SERVER=$url WASMTX_TOKEN=$token "$wasmtx" invoke transfer --input \
    "{\"from\": {\"participant\": \"bank_a\", \"account\": \"alice\"}, \"to\": {\"participant\": \"bank_b\", \"account\": \"bob\"}, \"amount\": $amount}" >/dev/null || true
done
stop_server

history="$work/state/server-bench.sqlite"
now_ms=$(( $(date +%s) * 1000 ))
real=$(sqlite3 "$history" 'SELECT COUNT(*) FROM transactions')
sqlite3 "$history" <<EOF
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $ROWS)
INSERT INTO transactions (gid, plugin, version, digest, participants, status, http_status, response, started_at, finished_at)
SELECT 'wtx.bench.01' || printf('%024d', n.i), t.plugin, t.version, t.digest, t.participants, t.status, t.http_status, t.response,
       $now_ms - (n.i * 7200000 / $ROWS), $now_ms - (n.i * 7200000 / $ROWS) + 3
  FROM n JOIN (SELECT *, ROW_NUMBER() OVER (ORDER BY gid) - 1 AS k FROM transactions) t
    ON t.k = n.i % $real;
EOF
echo "history: $(sqlite3 "$history" 'SELECT COUNT(*) FROM transactions') rows"
start_server

cookies="$work/cookies"
curl -s -c "$cookies" -o /dev/null -H "Origin: $url" --data-urlencode "token=$token" "$url/console/sign-in"
gid=$(sqlite3 "$history" "SELECT gid FROM transactions WHERE gid LIKE 'wtx.bench.01%' ORDER BY started_at LIMIT 1 OFFSET 50000")
cursor=$(sqlite3 "$history" "SELECT started_at || ':' || gid FROM transactions ORDER BY started_at DESC, gid DESC LIMIT 1 OFFSET 49999")
printf '%-58s %10s %10s\n' page median_ms max_ms
for page in "/console/" "/console/transactions" "/console/transactions?status=aborted" \
  "/console/transactions?plugin=transfer&cursor=$cursor" "/console/transactions/$gid" \
  "/console/in-doubt" "/console/plugins" "/console/plugins/transfer" \
  "/console/plugins/transfer/versions/1.0.0" "/console/nodes"; do
  times=()
  for _ in $(seq "$TIMES"); do
    read -r code took < <(curl -s -b "$cookies" -o /dev/null -w '%{http_code} %{time_total}\n' "$url$page")
    [ "$code" = 200 ] || { echo "$page answered $code"; exit 1; }
    times+=("$took")
  done
  printf '%s\n' "${times[@]}" | sort -n | awk -v page="${page:0:58}" '
    { t[NR] = $1 * 1000 } END { printf "%-58s %10.1f %10.1f\n", page, t[int((NR + 1) / 2)], t[NR] }'
done
