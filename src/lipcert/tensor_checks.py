"""Value checks on tensors that never read a value back to the host (pipeline infrastructure, issue 12).

A check such as ``int(targets.max()) < classes`` copies a value from the device and stalls the stream until
every queued kernel has run; in a training step that is a synchronisation per step.  :func:`require` queues the
check instead (``torch._assert_async``): on the CPU it is evaluated at once and raises ``ValueError`` with the
message; on an accelerator it becomes a device-side assertion that stops the process at the next
synchronisation (the message then appears in the device's error report, not as a Python exception).
"""

from __future__ import annotations

import torch

__all__ = ["require"]


def require(condition: torch.Tensor, message: str) -> None:
    """Raise ``ValueError(message)`` unless the boolean scalar tensor ``condition`` is true (asynchronously on
    an accelerator, see the module docstring)."""
    try:
        torch._assert_async(condition, message)
    except RuntimeError:
        raise ValueError(message) from None
