# Sourced by .ci/run: a throwaway PostgreSQL for the store contract tests.
# Debian's package, started as the postgres user (it refuses to run as root) in a temporary
# directory on a free localhost port, stopped and removed when the calling shell exits.
start_postgres() {
  if [ -n "${TASTEGRAPH_TEST_POSTGRES_URL:-}" ]; then
    return 0  # a server given from outside
  fi
  if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 && ! command -v pg_ctl >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
  fi
  local bindir
  bindir="$(dirname "$(command -v pg_ctl || ls -d /usr/lib/postgresql/*/bin/pg_ctl | sort -V | tail -1)")"
  PG_ROOT="$(mktemp -d -t tastegraph-ci-pg.XXXXXX)"
  local as=()
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres:postgres "$PG_ROOT"
    as=(runuser -u postgres --)
  fi
  local port
  port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  "${as[@]}" "$bindir/initdb" -D "$PG_ROOT/data" -A trust -U postgres -E UTF8 --no-sync >/dev/null
  PG_STOP=("${as[@]}" "$bindir/pg_ctl" -D "$PG_ROOT/data" -m fast stop)
  trap 'stop_postgres' EXIT
  "${as[@]}" "$bindir/pg_ctl" -D "$PG_ROOT/data" -l "$PG_ROOT/log" -w \
    -o "-p $port -k $PG_ROOT -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" \
    start >/dev/null
  export TASTEGRAPH_TEST_POSTGRES_URL="postgresql+psycopg://postgres@127.0.0.1:$port/postgres"
  echo "PostgreSQL ($bindir) on 127.0.0.1:$port"
}

stop_postgres() {
  if [ -n "${PG_ROOT:-}" ]; then
    "${PG_STOP[@]}" >/dev/null 2>&1 || true
    rm -rf "$PG_ROOT"
    PG_ROOT=""
  fi
}
