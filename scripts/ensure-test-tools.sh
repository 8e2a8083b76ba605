#!/usr/bin/env bash
# Makes sure the system tools the tests use are installed (Debian's packages):
#   * MariaDB: the tests start a server of their own and run the pipeline against a shared
#     ML Metadata store;
#   * Chromium: the tests open the HTML report in a headless browser.
set -euo pipefail
missing=()
command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server)
command -v chromium >/dev/null || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing ${missing[*]} from Debian's packages..." >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The MariaDB package starts a server of its own; the tests do not use it.
  service mariadb stop >/dev/null 2>&1 || true
else
  echo "error: missing ${missing[*]}; install these Debian packages (the tests need them)" >&2
  exit 1
fi
