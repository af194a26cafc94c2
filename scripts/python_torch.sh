#!/usr/bin/env bash
# Makes `import torch` work in the Python that scripts/setup.sh chose (default .venv).
# setup.sh installs only what libtorch needs; the reference fixtures and the benchmarks
# against transformers/TRL run PyTorch itself, so they complete the install here
# (PyTorch's Python dependencies and CUDA packages, ~4 GB, from PyPI; once).
#
#   scripts/python_torch.sh [PYTHON]
set -euo pipefail
python=${1:-${TILLER_PYTHON:-$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/python}}
if ! "$python" -c 'import torch' 2>/dev/null; then
  echo "completing PyTorch's Python install in $python (first run only)" >&2
  "$python" -m pip install --disable-pip-version-check -q torch==2.11.0
fi
