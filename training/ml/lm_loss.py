"""The language-model loss, fused with the output head: mean cross entropy of
`F.linear(h, weight)` against targets, computed a chunk of tokens at a time.

The plain path, `F.cross_entropy(lm_head(h), targets)`, materializes the logits (N, V), keeps
them and their log-softmax for the backward pass, then writes a zeroed (N, V) gradient, scatters
into it and runs the log-softmax backward: several passes over the largest tensor of the step.
Here each chunk's logits live only inside the forward pass, which computes the loss and, when a
backward pass will follow, the gradients of `h` and `weight` right away (Liger-kernel / "cut
cross-entropy" style): d(CE)/d(logits) = softmax - onehot, the log-softmax reused in place as the
softmax. Memory drops from O(N V) to O(chunk V).

The maths is the plain path's: logits in fp32 (upcast from bf16 under autocast, as before), the
head's matmuls in whatever precision autocast gives them.
"""

import torch
import torch.nn.functional as F

IGNORE = -100
# Tokens per chunk. With the demo's 2048-token vocabulary a chunk's fp32 logits take 8 MiB: they
# stay in the CPU's cache between the passes over them, and below glibc's 32 MiB mmap threshold,
# so the buffer is reused instead of page-faulted in afresh (a 32 MiB tensor costs ~25 ms of page
# faults on each allocation). On a GPU, 1024 x 50257 logits still make matmuls big enough.
CHUNK_TOKENS = 1024


def lm_head_cross_entropy(
    h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk_tokens: int = CHUNK_TOKENS
) -> torch.Tensor:
    """Mean cross entropy of `F.linear(h, weight)` (..., V) against `targets` (...), over the
    positions whose target is not -100. h (..., C), weight (V, C)."""
    # Under no_grad `ctx.needs_input_grad` still says True: ask here whether a backward can come.
    with_grad = torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad)
    return _LMHeadCrossEntropy.apply(h, weight, targets, chunk_tokens, with_grad)


class _LMHeadCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, targets, chunk, with_grad):
        flat_h = h.reshape(-1, h.size(-1))  # (N, C)
        flat_t = targets.reshape(-1)  # (N,)
        # Ignored positions run through with target 0 and a weight of 0: no data-dependent shapes,
        # so no host sync and nothing for torch.compile to break on.
        keep = (flat_t != IGNORE).unsqueeze(1)  # (N, 1)
        safe_t = flat_t.clamp(min=0).unsqueeze(1)  # (N, 1)
        loss = torch.zeros((), device=h.device)
        grad_h = torch.empty_like(flat_h) if with_grad else None
        grad_w = torch.zeros(weight.shape, device=h.device) if with_grad else None  # fp32 sum
        for start in range(0, flat_h.size(0), chunk):
            end = start + chunk
            k_c, t_c = keep[start:end], safe_t[start:end]  # (c, 1), (c, 1)
            h_c = flat_h[start:end] * k_c  # (c, C), ignored rows zeroed: no weight gradient
            logits = F.linear(h_c, weight)  # (c, V), bf16 under autocast
            logp = torch.log_softmax(logits.float(), dim=-1)  # (c, V)
            loss -= (logp.gather(1, t_c) * k_c).sum()
            if with_grad:
                dlogits = logp.exp_()  # softmax, in place
                dlogits.scatter_add_(1, t_c, torch.full_like(logp[:, :1], -1.0))  # - onehot
                dlogits = dlogits.to(logits.dtype)  # d(sum of CE)/d(logits), (c, V)
                grad_h[start:end] = (dlogits @ weight) * k_c  # (c, C)
                grad_w += dlogits.t() @ h_c  # (V, C)
        n = keep.sum()  # nan loss when nothing is learned, as F.cross_entropy gives
        if with_grad:
            ctx.save_for_backward(grad_h.view(h.shape), grad_w.to(weight.dtype), n)
        return loss / n

    @staticmethod
    def backward(ctx, grad_loss):
        grad_h, grad_w, n = ctx.saved_tensors
        scale = grad_loss / n
        return grad_h * scale, grad_w * scale, None, None, None
