#!/usr/bin/env bash
# Create .venv and install xalign with its test tools. torch goes first, pinned, so that
# pip does not pull another build; set TORCH_SPEC to choose a different one (e.g. a CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install --quiet "${TORCH_SPEC:-torch==2.13.0}"
python -m pip install --quiet -e ".[test]"
python -c "import xalign, torch; print('xalign', xalign.__version__, '| torch', torch.__version__)"
