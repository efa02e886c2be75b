#!/usr/bin/env bash
# Headless-Chromium screenshots of the built documentation site, to look at the pages as a reader
# does (the file viewer shows PNGs).  Build the site first:
#
#   python -m sphinx -W --keep-going -b html docs docs/_build/html
#   bash scripts/screenshots.sh [OUT_DIR]          # default docs/_screenshots (not committed)
#
# Pages: the index, an API page (fastlog.torch.patch), a gallery page (likelihood vs
# log-likelihood), the gallery index, the benchmark page and the accuracy page; each at a desktop
# width, full height of its first screens, plus the index at a phone width.
# Needs Chromium (Debian: apt-get install chromium).  Nothing is fetched from the network: the
# pages are opened from the files.
set -euo pipefail
cd "$(dirname "$0")/.."
HTML=docs/_build/html
OUT=${1:-docs/_screenshots}
CHROME=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$CHROME" ]; then
    echo "screenshots.sh: Chromium not found (apt-get install chromium)" >&2
    exit 2
fi
if [ ! -f "$HTML/index.html" ]; then
    echo "screenshots.sh: no built site in $HTML; build it first (python -m sphinx -b html docs $HTML)" >&2
    exit 2
fi
mkdir -p "$OUT"
PROFILE=$(mktemp -d)
trap 'rm -rf "$PROFILE"' EXIT

shot() {   # shot NAME PAGE WIDTH HEIGHT
    local name=$1 page=$2 w=$3 h=$4
    if [ ! -f "$HTML/$page" ]; then
        echo "screenshots.sh: $HTML/$page does not exist" >&2
        exit 1
    fi
    timeout 120 "$CHROME" --headless=new --no-sandbox --disable-gpu --hide-scrollbars \
        --user-data-dir="$PROFILE" --no-first-run --disable-extensions --disable-background-networking \
        --virtual-time-budget=3000 --window-size="$w,$h" \
        --screenshot="$OUT/$name.png" "file://$PWD/$HTML/$page" >/dev/null 2>&1
    echo "$OUT/$name.png  <- $page (${w}x${h})"
}

shot index index.html 1400 1400
shot index_phone index.html 430 1400
shot api_patch api/generated/fastlog.torch.patch.html 1400 1600
shot api_cross_entropy_and_grad api/generated/fastlog.cross_entropy_and_grad.html 1400 2000
shot gallery_index auto_examples/index.html 1400 1500
shot gallery_likelihood auto_examples/plot_likelihood_vs_log_likelihood.html 1400 2600
shot benchmarks guide/benchmarks.html 1400 2600
shot accuracy guide/accuracy.html 1400 1800
