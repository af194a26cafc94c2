#!/usr/bin/env bash
# Makes .venv-test: the Python clients the tests drive Tiller with (the official `openai`
# client against `tiller serve`, PyPI's `gguf` reader and transformers' GGUF loader for
# exported files, with .venv's PyTorch through a .pth file). Idempotent:
# a second run installs only what changed in the list below. Tests find the interpreter at
# .venv-test/bin/python (or TILLER_TEST_PYTHON).
#
#   scripts/test_venv.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# One package a line, pinned, so a test run is reproducible.
packages=(
  openai==3.57.0
  accelerate==1.15.0
  gguf==0.19.0
  numpy==2.4.6
  transformers==5.23.0
)
[ ${#packages[@]} -gt 0 ] || exit 0
[ -x .venv-test/bin/python ] || python3 -m venv .venv-test
# transformers' GGUF loader runs PyTorch: reuse the torch of .venv (or TILLER_PYTHON),
# completed once by python_torch.sh, through a .pth file, as the benchmarks' venv does.
# The .pth lists every site-packages that Python sees, so torch's dependencies come too
# wherever they were installed.
torch_python=${TILLER_PYTHON:-.venv/bin/python}
scripts/python_torch.sh "$torch_python"
test_site=$(.venv-test/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
"$torch_python" -c 'import sys; print("\n".join(p for p in sys.path if p.endswith("site-packages")))' \
  > "$test_site/tiller-torch.pth"
stamp=.venv-test/.tiller-packages
wanted=$(printf '%s\n' "${packages[@]}")
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "installing the Python test clients into .venv-test" >&2
  .venv-test/bin/pip install --disable-pip-version-check -q --no-cache-dir "${packages[@]}"
  printf '%s' "$wanted" > "$stamp"
fi
