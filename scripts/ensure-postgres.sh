#!/usr/bin/env bash
# Makes sure a PostgreSQL server binary is installed (Debian's package), for the tests that run
# the pipeline against a shared ML Metadata store. The tests start and stop their own server.
set -euo pipefail
if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing PostgreSQL from Debian's packages..." >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  # The package starts a cluster of its own; the tests do not use it.
  pg_ctlcluster --help >/dev/null 2>&1 && for c in /etc/postgresql/*/main; do
    pg_ctlcluster "$(basename "$(dirname "$c")")" main stop 2>/dev/null || true
  done
else
  echo "error: PostgreSQL is not installed; install Debian's 'postgresql' package (needed by the metadata tests)" >&2
  exit 1
fi
