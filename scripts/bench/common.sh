# Sourced by scripts/bench_*.sh (from the repository root, with $torch_python set):
# completes PyTorch for the Python side, makes .venv-bench with TRL 1.16.0 from PyPI
# (reusing that torch through a .pth file), and sets $tiller to the binary to measure:
# TILLER_BIN if given, else a fresh build of PROFILE (release by default; PROFILE=dev
# reuses a debug build: the work is in libtorch, so the Rust opt-level barely matters).
scripts/python_torch.sh "$torch_python"

if [ ! -x .venv-bench/bin/python ]; then
  python3 -m venv .venv-bench
  site=$("$torch_python" -c 'import torch, os; print(os.path.dirname(os.path.dirname(torch.__file__)))')
  py=$(.venv-bench/bin/python -c 'import sys; print(f"python{sys.version_info[0]}.{sys.version_info[1]}")')
  echo "$site" > ".venv-bench/lib/$py/site-packages/tiller-torch.pth"
  .venv-bench/bin/pip install -q trl==1.16.0 transformers datasets accelerate
fi

profile=${PROFILE:-release}
target_dir=${CARGO_TARGET_DIR:-target}
if [ -n "${TILLER_BIN:-}" ]; then
  tiller=$TILLER_BIN
elif [ "$profile" = release ]; then
  cargo build --release --bin tiller
  tiller="$target_dir/release/tiller"
else
  cargo build --bin tiller
  tiller="$target_dir/debug/tiller"
fi
