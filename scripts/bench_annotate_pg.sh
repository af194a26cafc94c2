#!/usr/bin/env bash
# The annotation server's load benchmark on PostgreSQL beside SQLite (BENCHMARKS.md
# §PostgreSQL backend): a throwaway cluster in a temporary directory on a loopback port,
# then `loadbench` with 64 clients on SQLite, and on PostgreSQL with one and two servers,
# a fresh database per run. Each binary given runs in turn, ROUNDS times, so that two
# builds measured in one call share the machine's conditions:
#
#   scripts/bench_annotate_pg.sh [LOADBENCH...]     (default target/debug/examples/loadbench)
#
# Environment: ROUNDS (2), ITEMS (30000), PORT (55433).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
[ $# -gt 0 ] || set -- target/debug/examples/loadbench
rounds=${ROUNDS:-2}
items=${ITEMS:-30000}
port=${PORT:-55433}
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
dir=$(mktemp -d)
run_as=()
if [ "$(id -u)" = 0 ]; then
  # initdb refuses to run as root.
  chown postgres "$dir"
  run_as=(su postgres -s /bin/sh -c)
else
  run_as=(sh -c)
fi
cleanup() { "${run_as[@]}" "$bin/pg_ctl -D $dir/data -m immediate stop" >/dev/null 2>&1 || true; rm -rf "$dir"; }
trap cleanup EXIT
"${run_as[@]}" "$bin/initdb -D $dir/data -U tiller --auth=trust -E UTF8 --locale=C.UTF-8" >/dev/null
"${run_as[@]}" "$bin/pg_ctl -D $dir/data -l $dir/log -w -o '-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=300' start" >/dev/null
psql="psql -h 127.0.0.1 -p $port -U tiller -qAt -d postgres"

echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) vCPUs; commit $(git rev-parse --short HEAD); $(date -u '+%F %H:%M UTC')"
for loadbench in "$@"; do
  echo "== $loadbench, SQLite, 1 server"
  "$loadbench" --clients 64 --seconds 10 --warmup 2 --overlap 1 | grep -E "votes/s|vote latency"
done
for servers in 1 2; do
  for round in $(seq "$rounds"); do
    for loadbench in "$@"; do
      db=bench_$(date +%s%N)
      $psql -c "CREATE DATABASE $db" >/dev/null
      echo "== $loadbench, PostgreSQL, $servers server(s), round $round (load $(cut -d' ' -f1 /proc/loadavg))"
      "$loadbench" --clients 64 --seconds 10 --warmup 2 --overlap 1 --items "$items" \
        --servers "$servers" --db "postgres://tiller@127.0.0.1:$port/$db" | grep -E "votes/s|vote latency"
      $psql -c "DROP DATABASE $db" >/dev/null
    done
  done
done
