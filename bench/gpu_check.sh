#!/usr/bin/env bash
# Issue 3's GPU figures in one short run, for a session that is lent a CUDA machine (the device
# tool's image already has torch and transformers; these scripts need nothing else of ours):
#
#     bash bench/gpu_check.sh            # a few minutes on an H200; PYTHON=... to pick one
#
# It prints the 124M preset's training tokens/s and MFU against transformers' GPT2LMHeadModel
# (bf16 autocast and fused AdamW, as training runs on CUDA), the same compiled, and sampling with
# and without the KV cache at 256 new tokens. Each step is one of the bench scripts, so the
# figures read the same as on the CPU.
set -euo pipefail
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
GPT2=(--preset gpt2 --vocab-size 50257)

$PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
$PY bench/bench_model.py "${GPT2[@]}" --batch-size 8 --block-size 1024 --rounds 3 --steps 3
$PY bench/bench_model.py "${GPT2[@]}" --batch-size 8 --block-size 1024 --rounds 3 --steps 3 --compile
$PY bench/bench_sampling.py "${GPT2[@]}" --prompts 8 --num-samples 4
