"""Which floating-point type runs fast on a device: decided here once, for every model enhance runs.

bf16 halves memory traffic and, on CPUs with native bf16 (AVX512-BF16, AMX) and on CUDA GPUs,
runs matmuls and convolutions 2-4x faster than fp32. On a CPU without it (AVX2 only, most
laptops and many cloud cores) oneDNN has no bf16 kernels and PyTorch falls back to reference
code 10-40x slower than fp32 (measured: a DIRAC training step 48 s against 4.7 s), so
there fp32 is the fast type.
"""

from __future__ import annotations

import torch


def cpu_has_fast_bf16() -> bool:
    """Whether oneDNN has bf16 kernels for this CPU (AVX512 or newer)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def fast_dtype(device) -> torch.dtype:
    """bf16 on CUDA and on CPUs with bf16 kernels, fp32 elsewhere."""
    if torch.device(device).type == "cuda":
        return torch.bfloat16
    return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32


def autocast(device):
    """bf16 autocast where bf16 is fast (`fast_dtype`); a no-op context elsewhere."""
    device = torch.device(device)
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=fast_dtype(device) == torch.bfloat16)
