#!/usr/bin/env bash
# Builds the book (docs/, mdBook, pinned) into .local/book and checks every link in it:
#   1. installs mdbook into .local/mdbook (from crates.io, pinned) unless it is there;
#   2. cuts README.md and docs/guide.md into the sections the pages include, and writes the
#      CLI reference from the `regate` binary (`regate reference`), so neither can drift;
#   3. mdbook build, then the link check (docs/book.py check).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
mdbook_version=0.4.52
mdbook="$root/.local/mdbook/bin/mdbook"
if [ ! -x "$mdbook" ] || [ "$("$mdbook" --version)" != "mdbook v$mdbook_version" ]; then
  echo "book: installing mdbook $mdbook_version into .local/mdbook"
  cargo install --quiet --locked mdbook --version "$mdbook_version" --root "$root/.local/mdbook"
fi
python3 docs/book.py split
cargo build --quiet --locked -p regate-cli --bin regate
target/debug/regate reference > docs/src/cli-reference.md
"$mdbook" build docs
python3 docs/book.py check

# In a real browser: the book's first page renders, with a page for every role in its sidebar.
if command -v chromium >/dev/null 2>&1; then
  page="file://$root/.local/book/index.html"
  dom=$(timeout 60 chromium --headless --no-sandbox --disable-gpu --dump-dom "$page" 2>/dev/null || true)
  for title in "Getting started" "Deploying and operating" "Connecting Slack and Teams" \
               "Writing and testing policies" "Approving" "Auditing" "CLI reference"; do
    if ! grep -q "$title" <<<"$dom"; then
      echo "book: Chromium does not show \"$title\" on the first page" >&2
      exit 1
    fi
  done
  timeout 60 chromium --headless --no-sandbox --disable-gpu --window-size=1280,900 \
    --screenshot="$root/.local/book-first-page.png" "$page" >/dev/null 2>&1 || true
  echo "book: Chromium shows every role's page (screenshot .local/book-first-page.png)"
fi
