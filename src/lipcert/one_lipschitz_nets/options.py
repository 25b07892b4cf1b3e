"""Option handling shared by the 1-Lipschitz family builders: a named size preset plus explicit options."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["merge_size_options"]


def merge_size_options(options: Mapping, sizes: Mapping[str, Mapping], defaults: Mapping, allowed: set[str],
                       family: str) -> dict:
    """``defaults``, then the preset ``options["size"]`` (a key of ``sizes``), then the explicit options.

    Explicit options override the preset; ``None`` values are ignored.  Raises ValueError naming an unknown
    option or size.
    """
    unknown = set(options) - allowed
    if unknown:
        raise ValueError(f"unknown {family} option(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    resolved: dict = dict(defaults)
    size = options.get("size")
    if size is not None:
        if size not in sizes:
            raise ValueError(f"size must be one of {sorted(sizes)}, got {size!r}")
        resolved.update(sizes[size])
    resolved.update({k: v for k, v in options.items() if k != "size" and v is not None})
    return resolved
