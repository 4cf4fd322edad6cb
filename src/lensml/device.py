"""Which torch device a command runs on, and its name as results report it."""

from __future__ import annotations

import platform
from collections.abc import Mapping

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
    if device.type == "cuda" and device.index is not None:
        count = torch.cuda.device_count()
        if device.index >= count:
            raise BadInputError(f"--device {name}: torch sees {count} CUDA GPU{'s' if count > 1 else ''} "
                                f"(cuda:0{f' to cuda:{count - 1}' if count > 1 else ''})")
    if device.type == "cuda" and distributed.launched():
        if device.index is not None:
            raise BadInputError(f"--device {name}: under torchrun each process takes its own GPU; write --device cuda")
        device = torch.device("cuda", distributed.group().local_rank)
    return device


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


# the instructions that multiply in each half precision (x86), as torch.cpu.get_capabilities() names them
NATIVE_HALF_FLAGS = {"bf16": ("avx512_bf16", "amx_bf16"), "fp16": ("avx512_fp16", "amx_fp16")}


def cpu_has_native(precision: str, capabilities: Mapping[str, bool] | None = None) -> bool:
    """Whether this CPU multiplies in `precision` natively (AVX512-BF16 or AMX for bf16, AVX512-FP16 or
    AMX-FP16 for fp16); otherwise autocast emulates it, no faster than float32. Non-x86 CPUs report no
    such flags and count as native: the note below is then left out rather than said wrongly."""
    if precision == "fp32":
        return True
    caps = torch.cpu.get_capabilities() if capabilities is None else capabilities
    known = [caps[flag] for flag in NATIVE_HALF_FLAGS[precision] if flag in caps]
    return not known or any(known)


def half_precision_note(precision: str, device: torch.device, capabilities: Mapping[str, bool] | None = None,
                        ) -> str | None:
    """Why `--precision` will not speed up training on `device`, or None when it should."""
    if device.type != "cpu" or cpu_has_native(precision, capabilities):
        return None
    return (f"this CPU has no native {precision} arithmetic ({' or '.join(NATIVE_HALF_FLAGS[precision])}): "
            f"--precision {precision} is emulated and runs slower than fp32 here; use fp32")
