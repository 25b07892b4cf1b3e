"""Experiment parameter files (``params/*.yaml``): defaults + named experiments + overrides.

A file has ``defaults`` (a run mapping) and ``experiments`` (name -> partial run mapping). One run's
parameters are ``defaults`` deep-merged with one experiment and then with ``--set key.sub=value``
overrides; the result is validated by :func:`lipcert.run_config.load_run_config`.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .io_utils import read_yaml
from .run_config import RunConfig, load_run_config

__all__ = ["deep_merge", "apply_overrides", "load_params_file", "run_config_from_params"]


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursively merge ``update`` into a copy of ``base`` (mappings merge, everything else replaces)."""
    out = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _number_if_possible(value: Any) -> Any:
    """YAML reads ``1e-3`` (no dot) as a string; turn such strings into floats, leave others alone."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def apply_overrides(data: Mapping[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` strings (values parsed as YAML, so ``1e-3``/``[1, 2]`` work).

    ``key+=value`` appends to the list at ``key`` (a value or a list of values); an unset top-level key appends to
    :class:`RunConfig`'s default (``eval_eps+=[0.5]``: the paper radii and 0.5, without copying the radii).
    """
    out = copy.deepcopy(dict(data))
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        append = key.endswith("+")
        parts = [p for p in key.rstrip("+").strip().split(".") if p]
        if not parts:
            raise ValueError(f"override {item!r} has an empty key")
        value = yaml.safe_load(raw)
        value = [_number_if_possible(v) for v in value] if isinstance(value, list) else _number_if_possible(value)
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r}: {part!r} is not a mapping")
        if append:
            current = node.get(parts[-1], _default_of(parts) if node is out else None)
            if not isinstance(current, list):
                raise ValueError(f"override {item!r}: {'.'.join(parts)!r} is {current!r}, not a list to append to")
            value = current + (value if isinstance(value, list) else [value])
        node[parts[-1]] = value
    return out


def _default_of(parts: list[str]) -> Any:
    field = RunConfig.__dataclass_fields__.get(parts[0]) if len(parts) == 1 else None
    if field is None or field.default is dataclasses.MISSING:
        return None
    return list(field.default) if isinstance(field.default, tuple) else field.default


def load_params_file(path: str | Path) -> dict[str, Any]:
    """Read a params YAML file and check its top-level layout."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"params file not found: {p}")
    data = read_yaml(p) or {}
    allowed = {"defaults", "experiments", "certify_at_training_eps", "reference"}
    unknown = set(data) - allowed
    if unknown:
        raise ValueError(f"{p}: unknown top-level key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    if not isinstance(data.get("experiments"), Mapping) or not data["experiments"]:
        raise ValueError(f"{p}: needs a non-empty 'experiments' mapping")
    return data


def run_config_from_params(path: str | Path, experiment: str, overrides: list[str] | None = None,
                           seed: int | None = None) -> RunConfig:
    """The validated :class:`RunConfig` of ``experiment`` in params file ``path``."""
    data = load_params_file(path)
    experiments = data["experiments"]
    if experiment not in experiments:
        raise ValueError(f"{path}: unknown experiment {experiment!r}; available: {sorted(experiments)}")
    merged = deep_merge(data.get("defaults") or {}, experiments[experiment] or {})
    merged = apply_overrides(merged, list(overrides or []))
    if seed is not None:
        merged["seed"] = seed
    return load_run_config(merged, where=f"{path}: experiments.{experiment}")
