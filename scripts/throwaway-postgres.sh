#!/usr/bin/env bash
# Start a throwaway PostgreSQL cluster on loopback for the tests and print its URL on the last line.
#   scripts/throwaway-postgres.sh [DIR] [PORT]     (stop it with: pg_ctl -D DIR/data stop)
# Needs the Debian `postgresql` package (or any PostgreSQL whose initdb/pg_ctl are on PATH).
# Durability is switched off: this cluster holds nothing worth keeping.
set -euo pipefail

dir=${1:-/tmp/preflab-postgres}
port=${2:-54329}

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -n "$bindir" ]; then PATH="$bindir:$PATH"; fi
command -v initdb >/dev/null || { echo "initdb not found: install PostgreSQL (apt-get install postgresql)" >&2; exit 1; }

# initdb refuses to run as root; use the postgres system account when we are root.
as_owner=()
if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
  as_owner=(runuser -u postgres --)
fi

if [ -f "$dir/data/postmaster.pid" ]; then
  "${as_owner[@]}" pg_ctl -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
fi
rm -rf "$dir"
mkdir -p "$dir"
[ ${#as_owner[@]} -eq 0 ] || chown postgres "$dir"

"${as_owner[@]}" initdb -D "$dir/data" -U preflab --auth=trust --encoding=UTF8 --no-locale >"$dir/initdb.log"
"${as_owner[@]}" pg_ctl -D "$dir/data" -l "$dir/server.log" -w start -o \
  "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off \
   -c full_page_writes=off -c max_connections=300" >/dev/null
createdb -h 127.0.0.1 -p "$port" -U preflab preflab_test
echo "postgresql://preflab@127.0.0.1:$port/preflab_test"
