#!/usr/bin/env bash
# Stops the server tests/pg/start-postgres.sh started in DIR and deletes
# DIR. Safe to run twice, or on a DIR where the start failed halfway.
set -euo pipefail

[[ $# -eq 1 ]] || { echo "usage: $0 DIR" >&2; exit 1; }
dir=$1
[[ -d $dir ]] || exit 0

if [[ -s $dir/data/PG_VERSION ]]; then
  bindir=/usr/lib/postgresql/$(cat "$dir/data/PG_VERSION")/bin
  as_owner() {
    if [[ $EUID -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
  }
  if as_owner "$bindir/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    # immediate: no shutdown checkpoint (seconds of fsync for nothing), as
    # the cluster is deleted next.
    as_owner "$bindir/pg_ctl" -D "$dir/data" -m immediate -w -t 60 stop >&2
  fi
fi
rm -rf "$dir"
