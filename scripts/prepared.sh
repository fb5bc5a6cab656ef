# Sourced by chaos.sh, server-chaos.sh and soak.sh: what every run sets up, the test
# servers' clients, and the prepared branches of node $node on both. A server that cannot be asked is a failure (said on stderr), never
# "no branches".
pg() { psql -h 127.0.0.1 -U postgres -v ON_ERROR_STOP=1 -qtAX "$@"; }
my() { mariadb -h 127.0.0.1 -u root -N -B "$@"; }

# This node's prepared branches on both servers, one gid per line.
branches() {
  local on_pg on_my
  on_pg=$(pg -d postgres -c "SELECT gid FROM pg_prepared_xacts WHERE gid LIKE 'wtx.$node.%'") ||
    { echo "cannot list PostgreSQL's prepared transactions" >&2; return 1; }
  on_my=$(my -e "XA RECOVER") || { echo "cannot run XA RECOVER on MariaDB" >&2; return 1; }
  [ -z "$on_pg" ] || printf '%s\n' "$on_pg"
  awk -v p="wtx.$node." 'index($4, p) == 1 { print $4 }' <<<"$on_my"
}

# How many there are; fails when they cannot be listed.
count_branches() {
  local list
  list=$(branches) || return 1
  grep -c . <<<"$list" || true
}

# Set-up of a run: the guest target, the database servers' settings, and the binary —
# $WASMTX if given, else a release build. Sets $target (the cargo target directory) and
# $wasmtx.
prepare_run() {
  rustup target add wasm32-wasip2 >/dev/null 2>&1
  bash scripts/setup-databases.sh >/dev/null
  target=${CARGO_TARGET_DIR:-$PWD/target}
  if [ -n "${WASMTX:-}" ]; then
    wasmtx=$WASMTX
  else
    cargo build --release --quiet
    wasmtx=$target/release/wasmtx
  fi
}
