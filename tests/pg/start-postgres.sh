#!/usr/bin/env bash
# Starts a throwaway PostgreSQL server for the collector's tests and prints
# its URL on stdout (everything else goes to stderr):
#
#   export PALISADE_TEST_POSTGRES_URL=$(tests/pg/start-postgres.sh DIR)
#   ... cargo test ...
#   tests/pg/stop-postgres.sh DIR
#
# DIR holds the cluster (DIR/data), its log (DIR/postgres.log), its Unix
# socket and its port (DIR/port); it is created if missing. Running the
# script again on a DIR whose server is up prints the same URL and changes
# nothing. The Debian package's own cluster, if any, is left alone.
#
# The server trusts every local connection without a password: it listens
# on 127.0.0.1 only and lives as long as the test run.
set -euo pipefail

log() { printf 'start-postgres: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

[[ $# -eq 1 ]] || die "usage: $0 DIR"
dir=$1
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

# Debian installs the server binaries per major version, off PATH.
find_bindir() {
  local candidate
  for candidate in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [[ -x $candidate/initdb && -x $candidate/pg_ctl ]] && { echo "$candidate"; return 0; }
  done
  return 1
}
if ! bindir=$(find_bindir); then
  log "installing postgresql"
  export DEBIAN_FRONTEND=noninteractive
  # Refresh the package lists only when apt does not know the package yet.
  if ! apt-cache show postgresql >/dev/null 2>&1; then
    apt-get update -qq >&2
  fi
  apt-get install -y -qq --no-install-recommends postgresql >&2
  bindir=$(find_bindir) || die "postgresql installed but no initdb under /usr/lib/postgresql"
fi

# PostgreSQL refuses to run as root: as root, run it as the postgres user
# (which the package creates); otherwise as whoever runs this script.
as_owner() {
  if [[ $EUID -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}
if [[ $EUID -eq 0 ]]; then
  id postgres >/dev/null 2>&1 || die "no postgres user; is the postgresql package installed?"
  chown postgres:postgres "$dir"
fi
chmod 700 "$dir"

url_for() { printf 'postgres://postgres@127.0.0.1:%s/postgres\n' "$1"; }

# Already running here? Then print its URL again.
if [[ -s $dir/port ]] && as_owner "$bindir/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
  url_for "$(cat "$dir/port")"
  exit 0
fi

if [[ ! -s $dir/data/PG_VERSION ]]; then
  rm -rf "$dir/data"
  # --no-sync: initdb's closing fsync protects a cluster against a power cut
  # during setup, which a throwaway one does not need. The server itself keeps
  # fsync on.
  as_owner "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 \
    --locale=C.UTF-8 --no-sync >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
fi

# A port nobody listens on: try random ones in the dynamic range, and try
# again if another process takes it between the check and the bind.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for attempt in 1 2 3 4 5; do
  port=$((20000 + RANDOM % 40000))
  port_in_use "$port" && continue
  # max_connections: the tests run in parallel, each with its own database
  # and a pool of up to ten connections; 300 leaves room for a test run on a
  # many-core machine. Everything else, fsync included, stays at the
  # defaults the collector is meant to run with.
  if as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
       -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=300" \
       start >&2; then
    echo "$port" >"$dir/port"
    url_for "$port"
    exit 0
  fi
  log "start on port $port failed (attempt $attempt); the log says:"
  tail -n 5 "$dir/postgres.log" >&2 || true
done
die "could not start postgres; see $dir/postgres.log"
