# Sourced by .ci/run: start a throwaway PostgreSQL cluster on loopback and export its URL in
# SEVLAUNCH_TEST_POSTGRES_URL. Without PostgreSQL installed it does nothing (those tests skip).
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -n "$pg_bin" ] && [ -x "$pg_bin/initdb" ]; then
  pg_dir=$(mktemp -d /tmp/sevlaunch-pg.XXXXXX)
  chown postgres "$pg_dir" 2>/dev/null || true
  run_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
  run_pg "$pg_bin/initdb" -D "$pg_dir/data" -A trust -U postgres >/dev/null
  run_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -o "-c listen_addresses=127.0.0.1 -p 55432 -k $pg_dir" -l "$pg_dir/log" -w start >/dev/null
  export SEVLAUNCH_TEST_POSTGRES_URL="postgresql+psycopg://postgres@127.0.0.1:55432/postgres"
  trap 'run_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -m immediate stop >/dev/null 2>&1 || true' EXIT
  echo "PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') on 127.0.0.1:55432"
fi
