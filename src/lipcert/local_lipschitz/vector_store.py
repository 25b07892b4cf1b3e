"""Per-sample power-iteration vectors on disk (seed 004 Algorithm 1: "initialise u^l with the u^l saved for this input
in the previous training epoch").

One memory-mapped file per layer and buffer (``torch.from_file``, half precision by default) under the run
directory, indexed by the sample's position in the training set.  Two buffers alternate by epoch: epoch e reads
the vectors epoch e - 1 wrote and writes the other buffer, so a run killed within an epoch and resumed from its
last checkpoint reads exactly the vectors the uninterrupted run read (the checkpoint records which buffer is
current).  A vector never written is zero and the power iteration starts from a random vector instead.
Bytes per sample: 2 buffers x (sum of the conv/linear input sizes) x the element size (:meth:`bytes_per_sample`).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

__all__ = ["PerSampleVectors"]

_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


class PerSampleVectors:
    """Warm-start vectors of ``shapes`` (one per layer, without batch) for ``n_samples`` samples in ``directory``."""

    def __init__(self, directory: str | Path, shapes: list[tuple[int, ...]], n_samples: int,
                 dtype: str = "float16") -> None:
        if dtype not in _DTYPES:
            raise ValueError(f"vector dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.shapes = [tuple(s) for s in shapes]
        self.n_samples = int(n_samples)
        self.dtype = _DTYPES[dtype]
        self.current = 0  # the buffer the last finished epoch wrote (read this epoch)
        # host-side record of which rows of each buffer hold a vector (the indices come to the host anyway)
        self.written = [torch.zeros(self.n_samples, dtype=torch.bool) for _ in (0, 1)]
        self._maps = [[self._open(layer, buf) for layer in range(len(self.shapes))] for buf in (0, 1)]

    def _open(self, layer: int, buf: int) -> torch.Tensor:
        count = self.n_samples * math.prod(self.shapes[layer])
        path = self.directory / f"layer{layer}_buffer{buf}.{str(self.dtype).split('.')[-1]}"
        nbytes = count * torch.empty((), dtype=self.dtype).element_size()
        if not path.exists() or path.stat().st_size != nbytes:
            with open(path, "wb") as f:  # sparse: reads as zeros ("never written")
                f.truncate(nbytes)
        return torch.from_file(str(path), shared=True, size=count, dtype=self.dtype).view(
            self.n_samples, *self.shapes[layer])

    def bytes_per_sample(self) -> int:
        """Disk bytes per training sample over both buffers."""
        return 2 * sum(math.prod(s) for s in self.shapes) * torch.empty((), dtype=self.dtype).element_size()

    def read(self, index: torch.Tensor, device: torch.device | str) -> tuple[list[torch.Tensor], bool]:
        """The stored vectors of the samples ``index`` (written by the previous epoch), float32 on ``device``, and
        whether every one of them was written (otherwise the caller fills the zero rows with random starts)."""
        idx = index.to("cpu")
        vectors = [m[idx].to(device=device, dtype=torch.float32) for m in self._maps[self.current]]
        return vectors, bool(self.written[self.current][idx].all())

    def write(self, index: torch.Tensor, vectors: list[torch.Tensor]) -> None:
        """Store this epoch's final vectors of the samples ``index`` (into the buffer the next epoch reads)."""
        idx = index.to("cpu")
        for m, v in zip(self._maps[1 - self.current], vectors):
            m[idx] = v.detach().to(device="cpu", dtype=self.dtype).reshape(m[idx].shape)
        self.written[1 - self.current][idx] = True

    def end_epoch(self) -> None:
        """The buffer written this epoch becomes the one read next epoch."""
        self.current = 1 - self.current

    def state_dict(self) -> dict:
        return {"current": self.current, "shapes": self.shapes, "n_samples": self.n_samples,
                "written": [w.clone() for w in self.written]}

    def load_state_dict(self, state: dict) -> None:
        if [tuple(s) for s in state["shapes"]] != self.shapes or state["n_samples"] != self.n_samples:
            raise ValueError(f"{self.directory}: stored vectors are for shapes {state['shapes']} and "
                             f"{state['n_samples']} samples, this run has {self.shapes} and {self.n_samples}")
        self.current = int(state["current"])
        self.written = [w.clone() for w in state["written"]]
