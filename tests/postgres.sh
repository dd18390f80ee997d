#!/usr/bin/env bash
# Provision a throwaway PostgreSQL server for the tests (Debian's `postgresql` package).
# Exports WANDB_HISTORY_TEST_PG (a postgresql:// URL). initdb/postgres refuse to run as root, so they
# run as the `postgres` user in a temporary data directory with their own port and socket directory.
PG_STARTED=""
PG_DIR=""

_pg_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  return 1
}

start_postgres() {
  if [ -n "${WANDB_HISTORY_TEST_PG:-}" ]; then
    return 0
  fi
  local bin
  if ! bin=$(_pg_bin); then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
      echo "installing PostgreSQL from Debian's packages..." >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null 2>&1; } || true
    fi
    bin=$(_pg_bin) || { echo "PostgreSQL is not installed; PostgreSQL tests will not run" >&2; return 0; }
  fi
  PG_DIR=$(mktemp -d /tmp/wandb-history-pg.XXXXXX)
  local port=$(( 20000 + RANDOM % 20000 ))
  local runner=()
  if [ "$(id -u)" = "0" ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home "$PG_DIR" postgres
    chown -R postgres "$PG_DIR"
    runner=(runuser -u postgres --)
  fi
  "${runner[@]}" "$bin/initdb" -D "$PG_DIR/data" -U postgres -A trust --no-sync >/dev/null
  "${runner[@]}" "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w \
    -o "-p $port -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
  PG_STARTED="$bin"
  export WANDB_HISTORY_TEST_PG="postgresql://postgres@127.0.0.1:$port/postgres"
  echo "PostgreSQL test server on 127.0.0.1:$port" >&2
}

stop_postgres() {
  if [ -n "$PG_STARTED" ]; then
    local runner=()
    [ "$(id -u)" = "0" ] && runner=(runuser -u postgres --)
    "${runner[@]}" "$PG_STARTED/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
    PG_STARTED=""
  fi
}
