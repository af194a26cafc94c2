#!/usr/bin/env bash
# Makes .venv-test: the Python clients the tests drive Tiller with (the official `openai`
# client against `tiller serve`, PyPI's `gguf` reader for exported files, ...). Idempotent:
# a second run installs only what changed in the list below. Tests find the interpreter at
# .venv-test/bin/python (or TILLER_TEST_PYTHON).
#
#   scripts/test_venv.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# One package a line, pinned, so a test run is reproducible.
packages=(
  openai==3.57.0
)
[ ${#packages[@]} -gt 0 ] || exit 0
[ -x .venv-test/bin/python ] || python3 -m venv .venv-test
stamp=.venv-test/.tiller-packages
wanted=$(printf '%s\n' "${packages[@]}")
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "installing the Python test clients into .venv-test" >&2
  .venv-test/bin/pip install --disable-pip-version-check -q --no-cache-dir "${packages[@]}"
  printf '%s' "$wanted" > "$stamp"
fi
