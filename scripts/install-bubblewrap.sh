#!/usr/bin/env bash
# ratchet evaluates code in a bubblewrap sandbox. Install it where we may (root + apt);
# otherwise say how, and carry on (ratchet itself then stops with the same advice).
if command -v bwrap >/dev/null; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get install -y -q bubblewrap >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q bubblewrap >/dev/null 2>&1; } \
    && exit 0
fi
echo "install-bubblewrap.sh: could not install bubblewrap; run: sudo apt-get install bubblewrap" >&2
