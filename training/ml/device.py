"""Where the model runs: CUDA with bf16 autocast when there is a GPU, the same code on CPU; and
in which precision a model that only samples is held."""

import time
from collections.abc import Callable
from contextlib import nullcontext
from functools import cache

import torch


def pick_device(preference: str | None = None) -> torch.device:
    """The device to train or sample on: `preference` if given ("cpu", "cuda", "cuda:1"), else
    CUDA when available, else CPU. Asking for CUDA on a machine without it is an error rather than
    a silent fall back, so a GPU job never crawls along on the CPU unnoticed."""
    if preference in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(preference)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {preference!r} requested but CUDA is not available here")
    return device


def autocast(device: torch.device | str):
    """bf16 autocast on CUDA (matmuls in bf16, reductions and the loss in fp32: no grad scaler
    needed); a no-op on CPU, where bf16 matmuls are slower than fp32 on most machines."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return nullcontext()


SAMPLING_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def sampling_dtype(device: torch.device | str, preference: str | None = None) -> torch.dtype:
    """The precision to sample in: `preference` ("float32", "bfloat16"), or by default bf16
    on CUDA with bf16, and on a CPU only where bf16 measures faster (`cpu_sampling_dtype`).
    Decoding reads every weight per token, so half the bytes can be up to twice the tokens/s
    (SmolLM2-135M at batch 8 on one AVX512-BF16 CPU: ~40 to ~80-110 tokens/s), but on another
    CPU that oneDNN also reports bf16 for, bf16 decoding ran 1.6-3x slower than fp32. Training
    and PPO's own rollouts stay in fp32 (PPO compares log-probabilities with the model it
    trains)."""
    if preference not in (None, "", "auto"):
        if preference not in SAMPLING_DTYPES:
            raise ValueError(f"sampling dtype must be auto, {' or '.join(SAMPLING_DTYPES)}")
        return SAMPLING_DTYPES[preference]
    device = torch.device(device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return cpu_sampling_dtype()


@cache
def cpu_sampling_dtype() -> torch.dtype:
    """fp32, or bf16 where oneDNN runs bf16 (AVX512-BF16, AMX) and it measures faster here:
    measured once per process (~0.05 s), on one thread: a shared CPU's other processes make
    multi-threaded timings wait on each other, and what is compared is the kernels."""
    try:
        native = torch.ops.mkldnn._is_mkldnn_bf16_supported()  # oneDNN's own check
    except (AttributeError, RuntimeError):  # a build without oneDNN
        native = False
    if not native:
        return torch.float32
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return faster_dtype(decode_matmul_timer())
    finally:
        torch.set_num_threads(threads)


BF16_MARGIN = 0.8  # bf16 must take under 80% of fp32's time: it also costs precision
MEASURE_ROUNDS = 5


def faster_dtype(measure: Callable[[torch.dtype], float]) -> torch.dtype:
    """bf16 when `measure(dtype)` (seconds for the same work) says it is clearly faster than
    fp32, else fp32. The two are timed in turns and each keeps its best round, so a burst of
    load from other processes slows one round, not the verdict."""
    best = {torch.float32: float("inf"), torch.bfloat16: float("inf")}
    for _ in range(MEASURE_ROUNDS):
        for dtype in best:
            best[dtype] = min(best[dtype], measure(dtype))
    clearly_faster = best[torch.bfloat16] < BF16_MARGIN * best[torch.float32]
    return torch.bfloat16 if clearly_faster else torch.float32


def decode_matmul_timer(rows: int = 8, width: int = 512) -> Callable[[torch.dtype], float]:
    """`measure(dtype)`: seconds for decode-shaped matmuls in fp32 or bf16, a batch of `rows`
    tokens through four (4 * width, width) weights (the MLP shape of a small model)."""
    inputs = {
        dtype: ([torch.ones(4 * width, width, dtype=dtype) for _ in range(4)],
                torch.ones(rows, width, dtype=dtype))
        for dtype in (torch.float32, torch.bfloat16)
    }  # fmt: skip

    def measure(dtype: torch.dtype) -> float:
        weights, x = inputs[dtype]
        started = time.perf_counter()
        for w in weights:
            torch.nn.functional.linear(x, w)
        return time.perf_counter() - started

    return measure
