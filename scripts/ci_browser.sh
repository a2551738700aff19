#!/usr/bin/env bash
# The browser for the annotation app's browser test (issue 19): Debian's chromium and its
# chromedriver. Installs both with apt-get (sudo when not root) when either is missing;
# does nothing when they are there. The browser builds Playwright or Selenium Manager
# would download cannot be fetched in CI, so the test drives these two.
#
#   scripts/ci_browser.sh          # then: CI=true make test (the browser test fails, not
#                                  # skips, under CI=true when they are missing)
set -euo pipefail

log() { echo "ci_browser: $*" >&2; }

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    log "found $(/usr/bin/chromium --version 2>/dev/null | head -n 1) and /usr/bin/chromedriver"
    exit 0
fi

log "chromium or chromedriver missing: installing Debian's chromium and chromium-driver"
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >&2
$sudo apt-get install -y -qq --no-install-recommends chromium chromium-driver >&2
/usr/bin/chromium --version >&2
/usr/bin/chromedriver --version >&2
