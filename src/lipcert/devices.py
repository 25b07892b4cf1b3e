"""Devices and the GPU numerics policy (pipeline infrastructure, issue 12; README "GPU numerics").

* :func:`resolve_device` turns ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` into a ``torch.device`` and fails at once,
  naming the problem, when the device does not exist (``--device cuda`` on a machine without CUDA).
* :func:`full_precision` is the context every certified number is computed in: TF32 off for matrix products and
  cuDNN convolutions (the certification logits, the tightness quotients), so a certificate never rests on a
  10-bit-mantissa product.  Converged bounds are float64 anyway (:mod:`lipcert.lanczos`), where TF32 never applies.
* Training steps run with PyTorch's defaults (cuDNN TF32 convolutions on, TF32 matrix products off) and cuDNN
  autotuning; :func:`set_deterministic` (``--deterministic``) switches to cuDNN's deterministic algorithms, no
  autotuning and ``torch.use_deterministic_algorithms`` (warn-only for ops without a deterministic kernel).
* :func:`describe_device` is what every ``metrics.json`` records under ``extra.numerics``: device type and name,
  torch / CUDA / cuDNN versions and the flags above.  Results are reproducible per device type and software
  stack: bitwise on the CPU and, with ``--deterministic``, on the same GPU type; otherwise to float32 rounding.
"""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Iterator

import torch

__all__ = ["cpu_name", "describe_device", "full_precision", "resolve_device", "set_deterministic"]


def resolve_device(name: str | torch.device) -> torch.device:
    """``auto`` (CUDA if available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``; raises ``ValueError`` naming the problem
    when the device is not there (checked before any data or model is loaded)."""
    text = str(name).strip()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        raise ValueError(f"--device {text!r}: unknown device; expected cpu, cuda, cuda:N or auto") from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise ValueError(f"--device {text!r}: only cpu and cuda devices are supported")
    if not torch.cuda.is_available():
        built = torch.version.cuda
        why = (f"torch {torch.__version__} is built with CUDA {built} but finds no usable GPU"
               if built else f"torch {torch.__version__} is a CPU-only build")
        raise ValueError(f"--device {text!r}: CUDA is not available on this machine ({why}; "
                         f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}); use --device cpu or auto")
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise ValueError(f"--device {text!r}: this process sees {count} CUDA device(s) (cuda:0..cuda:{count - 1})")
    return device


@contextlib.contextmanager
def full_precision() -> Iterator[None]:
    """TF32 off for matrix products and cuDNN convolutions inside the block; the previous flags are restored."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul
        torch.backends.cudnn.allow_tf32 = cudnn


def set_deterministic(enabled: bool) -> None:
    """Deterministic GPU kernels (``--deterministic``) or the fast defaults (cuDNN autotuning).

    Sets ``CUBLAS_WORKSPACE_CONFIG`` (required by cuBLAS for deterministic products) unless already set.
    """
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.deterministic = bool(enabled)
    torch.backends.cudnn.benchmark = not enabled
    if enabled or torch.are_deterministic_algorithms_enabled():  # the call imports torch._inductor (seconds)
        torch.use_deterministic_algorithms(bool(enabled), warn_only=True)


def cpu_name() -> str:
    """The host CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def describe_device(device: torch.device | str) -> dict:
    """The device and numerics of a run, for ``metrics.json`` (``extra.numerics``)."""
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        name = torch.cuda.get_device_name(index)
    else:
        name = cpu_name()
    return {
        "device": str(device),
        "device_type": device.type,
        "device_name": name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "training_tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
        "training_tf32_conv": bool(torch.backends.cudnn.allow_tf32),
        "certification_tf32": False,
        "converge_dtype": "float64",
        "deterministic": bool(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
    }
