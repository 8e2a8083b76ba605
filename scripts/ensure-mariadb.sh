#!/usr/bin/env bash
# Makes sure a MariaDB server binary is installed (Debian's package), for the tests that run the
# pipeline against a shared ML Metadata store. The tests start and stop a server of their own.
set -euo pipefail
if command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing MariaDB from Debian's packages..." >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mariadb-server >/dev/null
  # The package starts a server of its own; the tests do not use it.
  service mariadb stop >/dev/null 2>&1 || true
else
  echo "error: MariaDB is not installed; install Debian's 'mariadb-server' package (the metadata tests need it)" >&2
  exit 1
fi
