"""Give each pipeline job a GPU slot of its own: a lease on one slot of one device, held through a lock file.

Not part of the CLL paper: pipeline infrastructure (issue 4). Snakemake's ``--resources gpu=4`` only
caps how many ``gpu=1`` jobs run at once; it never says *which* device a job should use, so every job
would start on ``cuda:0``. A lease fixes that:

* each device has ``N`` *slots* (``LIPCERT_GPU_SLOTS``, default 1: one job per GPU) and each slot one
  lock file, ``<lock_dir>/gpu<i>.slot<k>.lock`` for ``k`` in ``0..N-1``;
* a job takes a non-blocking ``fcntl.flock`` on each file in turn and the first free slot wins. The
  order is slot 0 of every device, then slot 1 of every device, and so on, so jobs spread across the
  GPUs before any GPU gets a second job;
* the lock belongs to the open file, so it lasts exactly as long as the holding process (the kernel
  drops it when the process exits, even on SIGKILL): there are no stale locks to clean up;
* when every slot is taken the job retries every ``POLL_INTERVAL_S`` seconds until ``wait_s``, then
  raises a ``RuntimeError`` naming the lock directory, the device count and the slot count;
* with no GPU (device count 0) the lease is ``"cpu"`` and the child gets ``CUDA_VISIBLE_DEVICES=""``.

Slots let several small training runs share one GPU. With ``N`` slots, Snakemake's ``gpu`` resource
counts slots, not devices: ``--resources gpu=K`` with ``K <= devices x N`` (``--check-request K``
below checks that). Every run on a shared GPU gets ``CUDA_VISIBLE_DEVICES=<id>`` of that GPU and sees
it as ``cuda:0``; the runs share its memory and compute, nothing partitions them. Pick ``N`` from the
peak GPU memory of one run (``N`` runs must fit in the device's memory together) and from the
throughput that ``python -m lipcert.gpu_check`` measures (more slots pay off only while the GPU is not
already saturated by one run). The default, 1, keeps one job per GPU. All jobs that share a lock
directory should use the same ``N``; a job with a smaller ``N`` only ever takes the lower slots.

Command line (what the Snakemake rules run)::

    python -m lipcert.gpu_lease [--lock-dir DIR] [--wait SECONDS] [--slots N] -- CMD ARGS...

runs ``CMD`` with ``CUDA_VISIBLE_DEVICES`` set to the leased device (inside ``CMD`` it is then
``cuda:0``), prints one line to stderr saying what it leased (device and slot), holds the lease until
``CMD`` exits and exits with ``CMD``'s exit status (``128 + N`` when ``CMD`` was killed by signal
``N``). ``--slots`` overrides ``LIPCERT_GPU_SLOTS``. ::

    python -m lipcert.gpu_lease [--slots N] --check-request K

runs nothing: it prints one OK line and exits 0 when ``K`` concurrent GPU jobs (``--resources gpu=K``)
fit in devices x slots, else prints the problem and exits 1.

Environment: ``LIPCERT_GPU_COUNT`` overrides the device count (to use fewer GPUs than the machine has,
and in tests; when torch sees at least one CUDA device, asking for more than it sees is an error);
``LIPCERT_GPU_SLOTS`` sets the slots per device (a positive integer, default 1);
``LIPCERT_GPU_LOCK_DIR`` overrides the lock directory (default ``<tempdir>/lipcert-gpu-locks-<uid>``).
All jobs that share GPUs must use the same lock directory.
If this process already runs under a ``CUDA_VISIBLE_DEVICES`` mask (say ``"2,3"`` from a cluster
scheduler), the lease hands out the masked devices (``"2"`` or ``"3"``) and names the lock files after
them, so jobs with different masks on one machine still never share a slot.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "COUNT_ENV",
    "DEFAULT_WAIT_S",
    "LOCK_DIR_ENV",
    "POLL_INTERVAL_S",
    "SLOTS_ENV",
    "Lease",
    "check_slots_request",
    "default_lock_dir",
    "device_count",
    "lease_device",
    "main",
    "slots_per_device",
]

COUNT_ENV = "LIPCERT_GPU_COUNT"
LOCK_DIR_ENV = "LIPCERT_GPU_LOCK_DIR"
SLOTS_ENV = "LIPCERT_GPU_SLOTS"
VISIBLE_ENV = "CUDA_VISIBLE_DEVICES"
DEFAULT_WAIT_S = 600.0
POLL_INTERVAL_S = 0.1


@dataclass(frozen=True)
class Lease:
    """One leased slot of one device.

    ``index`` is the device's position among the devices this process can see (``None`` on CPU), and
    ``device`` the matching torch device string for *this* process (``"cuda:<index>"`` or ``"cpu"``).
    ``env`` holds the ``CUDA_VISIBLE_DEVICES`` value for a child process: the child sees only the
    leased device, as ``cuda:0`` (or no device at all: ``""`` on CPU). ``lock_path`` is the held lock
    file and ``slot`` the leased slot of the device (``0..N-1``); both are ``None`` on CPU.
    """

    index: int | None
    device: str
    env: Mapping[str, str]
    lock_path: Path | None
    slot: int | None = None


def _non_negative_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} must be a non-negative integer, got {value!r}")
    return value


def _positive_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return value


def _parse_int(raw: str, what: str, minimum: int) -> int:
    """``raw`` (surrounding blanks allowed) as an int ``>= minimum``, else a ValueError naming ``what``."""
    kind = "positive" if minimum == 1 else "non-negative"
    try:
        value = int(raw.strip())
    except ValueError:
        raise ValueError(f"{what} must be a {kind} integer, got {raw!r}") from None
    if value < minimum:
        raise ValueError(f"{what} must be a {kind} integer, got {raw!r}")
    return value


# Device nodes of the GPU drivers torch.cuda can use (NVIDIA, ROCm, WSL2). With none of them present
# torch.cuda.device_count() is 0, so importing torch (seconds) just to hear that can be skipped.
_GPU_DRIVER_NODES = ("/proc/driver/nvidia", "/dev/nvidiactl", "/dev/kfd", "/dev/dxg")


def _torch_device_count() -> int | None:
    """``torch.cuda.device_count()``; 0 without a GPU driver (torch is then not imported); None without torch."""
    if "torch" not in sys.modules and not any(os.path.exists(node) for node in _GPU_DRIVER_NODES):
        return 0
    try:
        import torch
    except ImportError:
        return None
    return int(torch.cuda.device_count())


def device_count() -> int:
    """Number of GPUs to hand out (pipeline infrastructure, not from the paper).

    ``LIPCERT_GPU_COUNT`` when set (a non-negative integer; ``0`` forces CPU), else
    ``torch.cuda.device_count()`` (torch is imported only then, or to check a positive
    ``LIPCERT_GPU_COUNT`` on a machine with a GPU driver). When torch sees at least one CUDA device, a
    ``LIPCERT_GPU_COUNT`` above that number raises ``ValueError`` naming both numbers; when it sees
    none, the value is taken as is (that is how the tests fake GPUs on a CPU-only machine).
    """
    raw = os.environ.get(COUNT_ENV)
    if raw is not None:
        value = _parse_int(raw, COUNT_ENV, minimum=0)
        if value > 0:
            real = _torch_device_count()
            if real is not None and 0 < real < value:
                raise ValueError(f"{COUNT_ENV}={value} asks for {value} GPU(s), but torch sees only {real} "
                                 f"CUDA device(s); lower {COUNT_ENV} to at most {real}")
        return value
    import torch

    return int(torch.cuda.device_count())


def slots_per_device() -> int:
    """Concurrent jobs per GPU (pipeline infrastructure, not from the paper).

    ``LIPCERT_GPU_SLOTS`` when set (a positive integer), else 1.
    """
    raw = os.environ.get(SLOTS_ENV)
    if raw is None:
        return 1
    return _parse_int(raw, SLOTS_ENV, minimum=1)


def check_slots_request(requested: int, count: int | None = None, slots: int | None = None) -> int:
    """Check that ``requested`` concurrent GPU jobs fit (pipeline infrastructure, not from the paper).

    ``requested`` is the ``K`` of Snakemake's ``--resources gpu=K``; ``count`` defaults to
    :func:`device_count`, ``slots`` to :func:`slots_per_device`. Raises ``ValueError`` when
    ``requested > count * slots`` (those jobs would only queue on the lease), except with no GPU
    (``count == 0``), where the jobs run on the CPU. Returns the number of slots, ``count * slots``.
    """
    requested = _non_negative_int(requested, "requested")
    count = device_count() if count is None else _non_negative_int(count, "count")
    slots = slots_per_device() if slots is None else _positive_int(slots, "slots")
    if count > 0:
        _visible_ids(count)
    capacity = count * slots
    if count > 0 and requested > capacity:
        raise ValueError(f"--resources gpu={requested} asks for {requested} concurrent GPU jobs, but "
                         f"{count} device(s) x {slots} slot(s) = {capacity} exist; "
                         f"raise {SLOTS_ENV} or lower gpu=")
    return capacity


def default_lock_dir() -> Path:
    """Lock directory shared by all leases of this user (pipeline infrastructure, not from the paper).

    ``LIPCERT_GPU_LOCK_DIR`` when set and non-empty, else ``<tempdir>/lipcert-gpu-locks-<uid>``.
    """
    configured = os.environ.get(LOCK_DIR_ENV, "").strip()
    if configured:
        return Path(configured)
    return Path(tempfile.gettempdir()) / f"lipcert-gpu-locks-{os.getuid()}"


def _visible_ids(count: int) -> list[str]:
    """Device ids to put in the child's ``CUDA_VISIBLE_DEVICES``, one per leasable device."""
    mask = os.environ.get(VISIBLE_ENV)
    if mask is None:
        return [str(i) for i in range(count)]
    entries = [entry.strip() for entry in mask.split(",") if entry.strip()]
    if count > len(entries):
        raise ValueError(f"device count {count} exceeds the {len(entries)} device(s) this process may use "
                         f"({VISIBLE_ENV}={mask!r}); lower {COUNT_ENV} or widen the mask")
    return entries[:count]


def _lock_name(device_id: str, slot: int) -> str:
    return "gpu" + re.sub(r"[^A-Za-z0-9_.-]", "_", device_id) + f".slot{slot}.lock"


def _try_lock(path: Path) -> int | None:
    """Open ``path`` and take a non-blocking exclusive flock; the open fd, or None when it is held."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise
    # Record the holder for humans reading the lock directory; the lock itself is the flock.
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _holders(lock_dir: Path, ids: Sequence[str], slots: int) -> str:
    parts = []
    for slot in range(slots):
        for device_id in ids:
            name = _lock_name(device_id, slot)
            try:
                pid = (lock_dir / name).read_text().strip() or "?"
            except OSError:
                pid = "?"
            parts.append(f"{name}: pid {pid}")
    return "; ".join(parts)


@contextlib.contextmanager
def _held_lease(lock_dir: str | os.PathLike[str] | None, count: int | None, wait_s: float,
                slots: int | None = None) -> Iterator[tuple[Lease, int | None]]:
    """Acquire a lease; yield it with the lock's fd (None on CPU); release on exit."""
    if count is None:
        count = device_count()
    count = _non_negative_int(count, "count")
    slots = slots_per_device() if slots is None else _positive_int(slots, "slots")
    if isinstance(wait_s, bool) or not isinstance(wait_s, (int, float)) or not wait_s >= 0:
        raise ValueError(f"wait_s must be a non-negative number of seconds, got {wait_s!r}")
    if count == 0:
        yield Lease(index=None, device="cpu", env={VISIBLE_ENV: ""}, lock_path=None, slot=None), None
        return
    ids = _visible_ids(count)
    directory = Path(lock_dir) if lock_dir is not None else default_lock_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    deadline = time.monotonic() + float(wait_s)
    while True:
        # Slot 0 of every device before slot 1 of any: jobs spread across GPUs before they double up.
        for slot in range(slots):
            for index, device_id in enumerate(ids):
                path = directory / _lock_name(device_id, slot)
                fd = _try_lock(path)
                if fd is None:
                    continue
                try:
                    yield Lease(index=index, device=f"cuda:{index}", env={VISIBLE_ENV: device_id},
                                lock_path=path, slot=slot), fd
                finally:
                    os.close(fd)  # closing the only fd of this open file drops the flock
                return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RuntimeError(f"no free GPU after waiting {float(wait_s):g} s: all {count} device(s) x {slots} "
                               f"slot(s) are leased in lock dir {str(directory)!r} "
                               f"({_holders(directory, ids, slots)}); wait longer, or run fewer gpu=1 jobs "
                               f"than devices ({COUNT_ENV}/the GPU count) x slots ({SLOTS_ENV})")
        time.sleep(min(POLL_INTERVAL_S, remaining))


@contextlib.contextmanager
def lease_device(lock_dir: str | os.PathLike[str] | None = None, count: int | None = None,
                 wait_s: float = DEFAULT_WAIT_S, slots: int | None = None) -> Iterator[Lease]:
    """Lease one slot of one device for the ``with`` block (pipeline infrastructure, not from the paper).

    Tries ``<lock_dir>/gpu<i>.slot<k>.lock`` with a non-blocking flock, for ``k`` in ``range(slots)``
    (outer loop) and ``i`` in ``range(count)`` (inner loop); the first free one wins, so every device
    gets a job before any device gets a second. ``count`` defaults to :func:`device_count`, ``slots``
    to :func:`slots_per_device`, ``lock_dir`` to :func:`default_lock_dir`. When all slots are leased,
    retries every ``POLL_INTERVAL_S`` s until ``wait_s`` s have passed, then raises ``RuntimeError``
    naming the lock dir, count and slots. ``count == 0`` yields a CPU lease at once.
    """
    with _held_lease(lock_dir, count, wait_s, slots) as (lease, _fd):
        yield lease


def _exit_status(returncode: int) -> int:
    """Shell convention: a child killed by signal N exits the wrapper with 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def _describe(lease: Lease, slots: int) -> str:
    if lease.index is None:
        return f"leased cpu (no GPU; {VISIBLE_ENV}='')"
    return (f"leased GPU {lease.env[VISIBLE_ENV]} slot {lease.slot} of {slots} "
            f"({VISIBLE_ENV}={lease.env[VISIBLE_ENV]}, cuda:0 in the job; lock {lease.lock_path})")


def _run_leased(command: Sequence[str], lock_dir: str | None, wait_s: float, slots: int | None = None) -> int:
    slots = slots_per_device() if slots is None else slots
    with _held_lease(lock_dir, None, wait_s, slots) as (lease, fd):
        print(f"lipcert.gpu_lease: pid {os.getpid()} {_describe(lease, slots)}", file=sys.stderr, flush=True)
        env = {**os.environ, **lease.env}
        # The child inherits the lock's fd: the lease then lasts until the child exits even if this
        # wrapper dies first, and the slot is never handed out while the child still uses it.
        pass_fds = (fd,) if fd is not None else ()
        try:
            child = subprocess.Popen(list(command), env=env, pass_fds=pass_fds)
        except FileNotFoundError:
            print(f"lipcert.gpu_lease: command not found: {command[0]!r}", file=sys.stderr)
            return 127
        except PermissionError:
            print(f"lipcert.gpu_lease: command not executable: {command[0]!r}", file=sys.stderr)
            return 126

        def forward(signum, _frame):
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signum)

        # SIGTERM/SIGHUP (a cancelled job) go on to the child; Ctrl-C already reaches the whole
        # foreground process group, so the wrapper just ignores SIGINT and waits for the child.
        previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, forward),
                    signal.SIGHUP: signal.signal(signal.SIGHUP, forward),
                    signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN)}
        try:
            returncode = child.wait()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return _exit_status(returncode)


def _check_request(requested: int, slots: int | None) -> int:
    """``--check-request K``: one OK line on stdout and 0, or the problem on stderr and 1."""
    try:
        count = device_count()
        slots = slots_per_device() if slots is None else slots
        capacity = check_slots_request(requested, count, slots)
    except ValueError as exc:
        print(f"lipcert.gpu_lease: {exc}", file=sys.stderr)
        return 1
    if count == 0:
        print(f"lipcert.gpu_lease: OK: gpu={requested}: no GPU, those jobs run on the CPU")
    else:
        print(f"lipcert.gpu_lease: OK: gpu={requested} fits {count} device(s) x {slots} slot(s) = {capacity}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lipcert.gpu_lease [--lock-dir D] [--wait S] [--slots N] -- CMD ...`` (pipeline infrastructure).

    Leases a device slot, runs ``CMD`` with ``CUDA_VISIBLE_DEVICES`` set to the device (``""`` on CPU),
    holds the lease until ``CMD`` exits and returns ``CMD``'s exit status. With ``--check-request K``
    it runs nothing and returns 0 when ``K`` concurrent GPU jobs fit in devices x slots, else 1.
    """
    parser = argparse.ArgumentParser(
        prog="python -m lipcert.gpu_lease",
        description="Run CMD on a GPU slot of its own: lease a device slot via a lock file and set "
                    "CUDA_VISIBLE_DEVICES.")
    parser.add_argument("--lock-dir", default=None,
                        help=f"lock directory (default: ${LOCK_DIR_ENV} or <tempdir>/lipcert-gpu-locks-<uid>)")
    parser.add_argument("--wait", type=float, default=DEFAULT_WAIT_S,
                        help=f"seconds to wait for a free slot before failing (default {DEFAULT_WAIT_S:g})")
    parser.add_argument("--slots", default=None, metavar="N",
                        help=f"concurrent jobs per GPU (default: ${SLOTS_ENV} or 1)")
    parser.add_argument("--check-request", default=None, metavar="K",
                        help="run nothing: check that --resources gpu=K fits in devices x slots (exit 0 or 1)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    args = parser.parse_args(argv)
    try:
        slots = None if args.slots is None else _parse_int(args.slots, "--slots", minimum=1)
        requested = (None if args.check_request is None
                     else _parse_int(args.check_request, "--check-request", minimum=0))
    except ValueError as exc:
        parser.error(str(exc))
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if requested is not None:
        if command:
            parser.error("--check-request runs no command: drop  -- CMD ARGS...")
        return _check_request(requested, slots)
    if not command:
        parser.error("missing command: use  python -m lipcert.gpu_lease -- CMD ARGS...")
    try:
        return _run_leased(command, args.lock_dir, args.wait, slots)
    except (RuntimeError, ValueError) as exc:
        print(f"lipcert.gpu_lease: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
