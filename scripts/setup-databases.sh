#!/usr/bin/env bash
# Prepares the local PostgreSQL and MariaDB servers for wasmtx's tests: starts them if they
# are down, enables prepared transactions on PostgreSQL (needs a restart), and creates the
# test databases and the least-privilege role `wasmtx_app` (password `wasmtx_app`) that
# participants connect as in the server tests. Idempotent; run as a user that may administer
# both servers (root here).
set -euo pipefail

PGHOST=${PGHOST:-127.0.0.1}
MYSQL_HOST=${MYSQL_HOST:-127.0.0.1}
pg() { psql -h "$PGHOST" -U postgres -v ON_ERROR_STOP=1 -qtAc "$1"; }
my() { mariadb -h "$MYSQL_HOST" -u root -e "$1"; }

wait_for() { # name, command...
  local name=$1; shift
  for _ in $(seq 1 60); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
  echo "setup-databases: $name did not come up" >&2; return 1
}

# Runs a command that starts a server with no file descriptor open but 0, 1 and 2: a server
# started under `flock` (the tests' database lock) would otherwise inherit the lock's
# descriptor and hold the lock for as long as it runs.
detached() {
  (
    for fd in /proc/$BASHPID/fd/*; do
      fd=${fd##*/}
      [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null
    done
    exec "$@"
  )
}

pg_cluster() { detached pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main "$1"; }

# PostgreSQL: running, with max_prepared_transactions > 0.
if ! pg "SELECT 1" >/dev/null 2>&1; then
  echo "setup-databases: starting PostgreSQL"
  pg_cluster start || true
  wait_for PostgreSQL pg "SELECT 1"
fi
if [ "$(pg "SHOW max_prepared_transactions")" = "0" ]; then
  echo "setup-databases: enabling prepared transactions on PostgreSQL (restart)"
  pg "ALTER SYSTEM SET max_prepared_transactions = 100"
  pg_cluster restart
  wait_for PostgreSQL pg "SELECT 1"
fi
for db in test wasmtx_test; do
  [ "$(pg "SELECT 1 FROM pg_database WHERE datname = '$db'")" = "1" ] || pg "CREATE DATABASE $db"
done
pg "DO \$\$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'root') THEN CREATE ROLE root LOGIN SUPERUSER; END IF; END \$\$"
# The participant role of README's least-privilege recipe: no superuser, no CREATEDB or
# CREATEROLE; it reads and writes the tables it is granted. In the shared databases it is
# granted every table postgres creates there; tests with databases of their own grant it
# theirs (tests/common: least_privilege).
pg "DO \$\$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'wasmtx_app') THEN CREATE ROLE wasmtx_app LOGIN PASSWORD 'wasmtx_app' NOSUPERUSER NOCREATEDB NOCREATEROLE; END IF; END \$\$"
for db in test wasmtx_test; do
  psql -h "$PGHOST" -U postgres -d "$db" -v ON_ERROR_STOP=1 -qtAc "
    GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO wasmtx_app;
    GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO wasmtx_app;
    ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO wasmtx_app;
    ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public GRANT USAGE ON SEQUENCES TO wasmtx_app"
done

# MariaDB: running, with the test databases.
if ! my "SELECT 1" >/dev/null 2>&1; then
  echo "setup-databases: starting MariaDB"
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
  detached start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
  wait_for MariaDB my "SELECT 1"
fi
my "CREATE USER IF NOT EXISTS 'wasmtx_app'@'%' IDENTIFIED BY 'wasmtx_app'"
for db in test test1 test2 wasmtx_test; do
  my "CREATE DATABASE IF NOT EXISTS $db"
  my "GRANT SELECT, INSERT, UPDATE, DELETE ON \`$db\`.* TO 'wasmtx_app'@'%'"
done
# MariaDB lets any account run XA RECOVER, XA COMMIT and XA ROLLBACK; MySQL 8 needs this.
if ! mariadb -h "$MYSQL_HOST" -u root -N -e 'SELECT VERSION()' | grep -qi mariadb; then
  my "GRANT XA_RECOVER_ADMIN ON *.* TO 'wasmtx_app'@'%'"
fi
echo "setup-databases: PostgreSQL (max_prepared_transactions=$(pg "SHOW max_prepared_transactions")) and MariaDB ($(mariadb -h "$MYSQL_HOST" -u root -N -e 'SELECT VERSION()')) are ready"
