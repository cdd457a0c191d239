#!/usr/bin/env bash
# Create the venv that the `guidellm` client tests (tests/clients/test_guidellm.py) run guidellm from.
#
# Idempotent: a venv that already holds these versions is left alone.
# Location: ${SERVESTACK_GUIDELLM_VENV:-$HOME/.cache/servestack/guidellm}
#
# guidellm needs torch (through transformers); torch==2.13.0 is named explicitly, and installed first,
# so pip takes the local CPU wheel: a bare `torch` would pull a multi-GB CUDA build.
set -euo pipefail

VENV="${SERVESTACK_GUIDELLM_VENV:-$HOME/.cache/servestack/guidellm}"
GUIDELLM_VERSION="0.8.1"
TORCH_VERSION="2.13.0"
PYTHON="${PYTHON:-python3}"
STAMP="$VENV/.servestack-guidellm"
WANT="guidellm==$GUIDELLM_VERSION torch==$TORCH_VERSION"

if [[ -x "$VENV/bin/guidellm" && -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
    echo "guidellm venv ready at $VENV ($WANT)"
    exit 0
fi

started=$(date +%s)
echo "creating the guidellm venv at $VENV ($WANT)"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "torch==$TORCH_VERSION"
"$VENV/bin/python" -m pip install --quiet "torch==$TORCH_VERSION" "guidellm==$GUIDELLM_VERSION"
"$VENV/bin/python" -c "import guidellm, torch, transformers; print('guidellm ok, torch', torch.__version__)"
echo "$WANT" > "$STAMP"
echo "guidellm venv ready at $VENV after $(( $(date +%s) - started ))s"
