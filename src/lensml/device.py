"""Which torch device a command runs on, and its name as results report it."""

from __future__ import annotations

import platform

import torch

from . import distributed
from .errors import BadInputError


def resolve_device(name: str) -> torch.device:
    """The torch device for `--device`; under torchrun, `cuda` means this process's own GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise BadInputError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BadInputError("--device cuda asked for, but torch sees no CUDA GPU (see README for GPU installs)")
    if device.type == "cuda" and distributed.launched():
        if device.index is not None:
            raise BadInputError(f"--device {name}: under torchrun each process takes its own GPU; write --device cuda")
        device = torch.device("cuda", distributed.group().local_rank)
    return device


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def cpu_has_native(precision: str) -> bool:
    """Whether this CPU multiplies in `precision` natively: bf16 with AVX512-BF16 or AMX, fp16 with
    AVX512-FP16 or AMX-FP16 (oneDNN's own checks); otherwise autocast emulates it."""
    if precision == "bf16":
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return precision != "fp16" or bool(torch.ops.mkldnn._is_mkldnn_fp16_supported())


def half_precision_note(precision: str, device: torch.device) -> str | None:
    """Why `--precision` will not speed up training on `device`, or None when it should."""
    if device.type != "cpu" or cpu_has_native(precision):
        return None
    return f"this CPU has no native {precision} arithmetic: --precision {precision} will not be faster than fp32"
