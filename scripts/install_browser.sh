#!/usr/bin/env bash
# Install headless Chromium (Debian package), so the report test renders the HTML report in a real
# browser instead of skipping. Skipped when a chromium is already on PATH; about 1 minute on a
# fresh Debian machine. Needs root (or sudo) and the Debian package mirrors.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    echo "chromium is already installed: $(command -v chromium || command -v chromium-browser)"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "no apt-get here: install Chromium by hand to run the browser test (it skips without)"
    exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
echo "chromium installed: $(command -v chromium)"
