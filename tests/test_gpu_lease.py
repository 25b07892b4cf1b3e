"""GPU lease: distinct devices for concurrent jobs, waiting, CPU fallback, crash safety, the CLI wrapper.

Device counts are faked with ``LIPCERT_GPU_COUNT`` and every test uses its own lock directory, so the
tests need no GPU and do not touch the leases of real jobs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lipcert.gpu_lease import Lease, default_lock_dir, device_count, lease_device

SRC = Path(__file__).resolve().parents[1] / "src"

# Child command run under the wrapper: records CUDA_VISIBLE_DEVICES (None when unset) and the time it
# held the device, then (optionally) waits for N records to exist or sleeps, and exits with a code.
RECORDER = textwrap.dedent("""
    import json, os, sys, time
    out, barrier, sleep_s, code = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    start = time.time()
    seen = os.environ.get("CUDA_VISIBLE_DEVICES")
    if barrier:
        rec_dir = os.path.dirname(out)
        deadline = time.time() + 10
        open(out + ".arrived", "w").close()
        while sum(f.endswith(".arrived") for f in os.listdir(rec_dir)) < barrier and time.time() < deadline:
            time.sleep(0.01)
    time.sleep(sleep_s)
    end = time.time()
    with open(out + ".tmp", "w") as fh:
        json.dump({"cvd": seen, "start": start, "end": end, "pid": os.getpid()}, fh)
    os.replace(out + ".tmp", out)
    sys.exit(code)
""")


def _env(count: int | None, lock_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", "LIPCERT_GPU_COUNT")}
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    env["LIPCERT_GPU_LOCK_DIR"] = str(lock_dir)
    if count is not None:
        env["LIPCERT_GPU_COUNT"] = str(count)
    env.update(extra)
    return env


def _wrapper(record: Path, *, barrier: int = 0, sleep_s: float = 0.0, code: int = 0,
             wrapper_args: tuple[str, ...] = ()) -> list[str]:
    return [sys.executable, "-m", "lipcert.gpu_lease", *wrapper_args, "--",
            sys.executable, "-c", RECORDER, str(record), str(barrier), str(sleep_s), str(code)]


def _records(directory: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(directory.glob("job*.json"))]


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    """Most intervals open at one instant (sweep over start/end events; an end before a start at a tie)."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda t: (t[0], t[1]))
    open_now = best = 0
    for _, delta in events:
        open_now += delta
        best = max(best, open_now)
    return best


@pytest.fixture
def no_mask(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("LIPCERT_GPU_COUNT", raising=False)


def test_max_overlap_helper_against_hand_counts():
    assert _max_overlap([(0, 1), (1, 2), (2, 3)]) == 1
    assert _max_overlap([(0, 3), (1, 2), (1.5, 4)]) == 3
    assert _max_overlap([(0, 2), (1, 3), (2.5, 4)]) == 2


def test_device_count_reads_env(monkeypatch):
    monkeypatch.setenv("LIPCERT_GPU_COUNT", " 3 ")
    assert device_count() == 3
    monkeypatch.setenv("LIPCERT_GPU_COUNT", "0")
    assert device_count() == 0
    for bad in ("-1", "two", "1.5", ""):
        monkeypatch.setenv("LIPCERT_GPU_COUNT", bad)
        with pytest.raises(ValueError, match="LIPCERT_GPU_COUNT"):
            device_count()


def test_device_count_without_env_asks_torch(monkeypatch):
    import torch

    monkeypatch.delenv("LIPCERT_GPU_COUNT", raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 5)
    assert device_count() == 5


def test_default_lock_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("LIPCERT_GPU_LOCK_DIR", str(tmp_path / "locks"))
    assert default_lock_dir() == tmp_path / "locks"
    monkeypatch.delenv("LIPCERT_GPU_LOCK_DIR")
    assert default_lock_dir().name == f"lipcert-gpu-locks-{os.getuid()}"


def test_leases_in_one_process_are_distinct_and_freed_on_exit(no_mask, tmp_path):
    with lease_device(tmp_path, count=3, wait_s=0) as a, lease_device(tmp_path, count=3, wait_s=0) as b:
        assert (a.index, a.device, dict(a.env)) == (0, "cuda:0", {"CUDA_VISIBLE_DEVICES": "0"})
        assert (b.index, b.device, dict(b.env)) == (1, "cuda:1", {"CUDA_VISIBLE_DEVICES": "1"})
        assert a.lock_path == tmp_path / "gpu0.lock"
        assert a.lock_path.read_text().strip() == str(os.getpid())
        with lease_device(tmp_path, count=3, wait_s=0) as c:
            assert c.index == 2
            with pytest.raises(RuntimeError):
                with lease_device(tmp_path, count=3, wait_s=0):
                    pass
    # all released: the first free index is 0 again
    with lease_device(tmp_path, count=3, wait_s=0) as again:
        assert again.index == 0


def test_freed_index_is_reused_first(no_mask, tmp_path):
    with lease_device(tmp_path, count=3, wait_s=0) as a:
        with lease_device(tmp_path, count=3, wait_s=0) as b:
            assert b.index == 1
        with lease_device(tmp_path, count=3, wait_s=0) as c:
            assert (a.index, c.index) == (0, 1)


def test_lease_released_when_body_raises(no_mask, tmp_path):
    with pytest.raises(KeyError):
        with lease_device(tmp_path, count=1, wait_s=0):
            raise KeyError("boom")
    with lease_device(tmp_path, count=1, wait_s=0) as lease:
        assert lease.index == 0


def test_count_zero_is_cpu(no_mask, tmp_path):
    with lease_device(tmp_path, count=0, wait_s=0) as lease:
        assert lease == Lease(index=None, device="cpu", env={"CUDA_VISIBLE_DEVICES": ""}, lock_path=None)
    assert not any(tmp_path.iterdir())  # no lock files for the CPU


def test_count_defaults_to_env(no_mask, monkeypatch, tmp_path):
    monkeypatch.setenv("LIPCERT_GPU_COUNT", "1")
    with lease_device(tmp_path, wait_s=0) as lease:
        assert lease.device == "cuda:0"
        with pytest.raises(RuntimeError, match="all 1 device"):
            with lease_device(tmp_path, wait_s=0):
                pass


def test_timeout_error_names_lock_dir_and_count(no_mask, tmp_path):
    with lease_device(tmp_path, count=2, wait_s=0), lease_device(tmp_path, count=2, wait_s=0):
        t0 = time.monotonic()
        with pytest.raises(RuntimeError) as info:
            with lease_device(tmp_path, count=2, wait_s=0.3):
                pass
        waited = time.monotonic() - t0
    message = str(info.value)
    assert str(tmp_path) in message and "all 2 device(s)" in message and "0.3 s" in message
    assert f"pid {os.getpid()}" in message  # names who holds the locks
    assert 0.3 <= waited < 2.0


def test_bad_arguments_raise_value_error(no_mask, tmp_path):
    for bad_count in (-1, 1.5, True):
        with pytest.raises(ValueError, match="count"):
            with lease_device(tmp_path, count=bad_count):
                pass
    for bad_wait in (-1, float("nan"), "10"):
        with pytest.raises(ValueError, match="wait_s"):
            with lease_device(tmp_path, count=1, wait_s=bad_wait):
                pass


def test_existing_cuda_mask_is_respected(no_mask, monkeypatch, tmp_path):
    # A scheduler gave this process physical GPUs 2 and 3: leases must hand out "2" and "3", and lock
    # files named after the physical devices so that jobs with other masks never share one.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    with lease_device(tmp_path, count=2, wait_s=0) as a, lease_device(tmp_path, count=2, wait_s=0) as b:
        assert (a.index, a.device, a.env["CUDA_VISIBLE_DEVICES"]) == (0, "cuda:0", "2")
        assert (b.index, b.device, b.env["CUDA_VISIBLE_DEVICES"]) == (1, "cuda:1", "3")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu2.lock", "gpu3.lock"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    with lease_device(tmp_path, count=1, wait_s=0) as c:
        assert c.lock_path == tmp_path / "gpu3.lock"
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,2")
        with lease_device(tmp_path, count=2, wait_s=0) as d:  # physical 3 is taken: gets 2
            assert (d.index, d.env["CUDA_VISIBLE_DEVICES"]) == (1, "2")
    with pytest.raises(ValueError, match="exceeds"):
        with lease_device(tmp_path, count=3, wait_s=0):
            pass


def test_four_concurrent_jobs_get_four_distinct_devices(tmp_path):
    locks, recs = tmp_path / "locks", tmp_path / "recs"
    recs.mkdir()
    env = _env(4, locks)
    # Every child waits until all four are running, so the four leases are held at the same time.
    procs = [subprocess.Popen(_wrapper(recs / f"job{i}.json", barrier=4), env=env, stderr=subprocess.PIPE,
                              text=True) for i in range(4)]
    errs = [p.communicate(timeout=30)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errs
    records = _records(recs)
    assert len(records) == 4
    assert max(r["start"] for r in records) < min(r["end"] for r in records)  # truly concurrent
    assert sorted(r["cvd"] for r in records) == ["0", "1", "2", "3"]
    for err in errs:
        assert len(err.strip().splitlines()) == 1 and "leased GPU" in err


def test_two_devices_four_jobs_wait_and_reuse(tmp_path):
    locks, recs = tmp_path / "locks", tmp_path / "recs"
    recs.mkdir()
    env = _env(2, locks)
    # Hold both devices here first, so all four jobs are certainly waiting when they are released.
    with lease_device(locks, count=2, wait_s=0), lease_device(locks, count=2, wait_s=0):
        procs = [subprocess.Popen(_wrapper(recs / f"job{i}.json", sleep_s=0.6, wrapper_args=("--wait", "20")),
                                  env=env) for i in range(4)]
        try:
            time.sleep(1.0)
            assert all(p.poll() is None for p in procs)  # blocked on the lease
            assert _records(recs) == []
        except BaseException:
            for p in procs:
                p.kill()
            raise
        released = time.time()
    assert [p.wait(timeout=30) for p in procs] == [0, 0, 0, 0]
    records = _records(recs)
    assert len(records) == 4
    assert all(r["start"] >= released for r in records)
    assert _max_overlap([(r["start"], r["end"]) for r in records]) <= 2
    by_device: dict[str, list[tuple[float, float]]] = {}
    for r in records:
        by_device.setdefault(r["cvd"], []).append((r["start"], r["end"]))
    assert set(by_device) == {"0", "1"}  # the freed indices are reused
    for intervals in by_device.values():
        assert _max_overlap(intervals) == 1  # never two jobs on one device
    # two waves of 0.6 s: the last job cannot finish before 1.2 s after the release
    assert max(r["end"] for r in records) - released >= 1.2


def test_cli_cpu_sets_empty_visible_devices(tmp_path):
    rec = tmp_path / "job0.json"
    env = _env(0, tmp_path / "locks", CUDA_VISIBLE_DEVICES="0,1")
    done = subprocess.run(_wrapper(rec), env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert json.loads(rec.read_text())["cvd"] == ""
    assert "leased cpu" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_cli_forwards_exit_code(tmp_path):
    env = _env(1, tmp_path / "locks")
    done = subprocess.run(_wrapper(tmp_path / "job0.json", code=7), env=env, capture_output=True, timeout=30)
    assert done.returncode == 7
    killed = subprocess.run([sys.executable, "-m", "lipcert.gpu_lease", "--", sys.executable, "-c",
                             "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"],
                            env=env, capture_output=True, timeout=30)
    assert killed.returncode == 128 + signal.SIGKILL
    missing = subprocess.run([sys.executable, "-m", "lipcert.gpu_lease", "--", str(tmp_path / "no-such-cmd")],
                             env=env, capture_output=True, text=True, timeout=30)
    assert missing.returncode == 127 and "command not found" in missing.stderr
    usage = subprocess.run([sys.executable, "-m", "lipcert.gpu_lease"], env=env, capture_output=True, text=True,
                           timeout=30)
    assert usage.returncode == 2 and "missing command" in usage.stderr


def test_cli_timeout_fails_with_message(tmp_path):
    locks = tmp_path / "locks"
    env = _env(1, locks)
    with lease_device(locks, count=1, wait_s=0):
        done = subprocess.run(_wrapper(tmp_path / "job0.json", wrapper_args=("--wait", "0.2")), env=env,
                              capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert "no free GPU" in done.stderr and str(locks) in done.stderr and "all 1 device(s)" in done.stderr
    assert not (tmp_path / "job0.json").exists()  # the command never ran


HOLDER = textwrap.dedent("""
    import sys, time
    from lipcert.gpu_lease import lease_device
    with lease_device(sys.argv[1], count=1, wait_s=5) as lease:
        print(lease.device, flush=True)
        time.sleep(60)
""")


def test_sigkilled_holder_frees_its_lease(no_mask, tmp_path):
    env = _env(None, tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], env=env, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "cuda:0"
        with pytest.raises(RuntimeError):
            with lease_device(tmp_path, count=1, wait_s=0):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        holder.stdout.close()
    with lease_device(tmp_path, count=1, wait_s=2) as lease:  # no stale lock left behind
        assert lease.index == 0


def test_cli_lease_lasts_until_child_exits_even_if_wrapper_dies(no_mask, tmp_path):
    locks, go, started = tmp_path / "locks", tmp_path / "go", tmp_path / "started"
    env = _env(1, locks)
    child = (f"import os, time\nopen({str(started)!r}, 'w').close()\n"
             f"while not os.path.exists({str(go)!r}): time.sleep(0.02)")
    wrapper = subprocess.Popen([sys.executable, "-m", "lipcert.gpu_lease", "--", sys.executable, "-c", child],
                               env=env, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert "leased GPU 0" in wrapper.stderr.readline()
        deadline = time.monotonic() + 10
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert started.exists()
        wrapper.send_signal(signal.SIGKILL)  # only the wrapper; its child keeps running on the GPU
        wrapper.wait(timeout=10)
        with pytest.raises(RuntimeError):
            with lease_device(locks, count=1, wait_s=0.2):
                pass
        go.touch()  # the child exits now
        with lease_device(locks, count=1, wait_s=5) as lease:
            assert lease.index == 0
    finally:
        go.touch()
        wrapper.stderr.close()
        if wrapper.poll() is None:
            os.killpg(wrapper.pid, signal.SIGKILL)


def test_cli_forwards_sigterm_to_child(tmp_path):
    started = tmp_path / "started"
    env = _env(1, tmp_path / "locks")
    child = ("import signal, sys, time\n"
             "signal.signal(signal.SIGTERM, lambda *_: sys.exit(5))\n"
             f"open({str(started)!r}, 'w').close()\n"
             "time.sleep(30)\n"
             "sys.exit(0)")
    wrapper = subprocess.Popen([sys.executable, "-m", "lipcert.gpu_lease", "--", sys.executable, "-c", child],
                               env=env, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert started.exists()
        wrapper.send_signal(signal.SIGTERM)  # to the wrapper only, as a cancelled job would get it
        assert wrapper.wait(timeout=10) == 5  # the child saw SIGTERM and its exit code came through
    finally:
        if wrapper.poll() is None:
            os.killpg(wrapper.pid, signal.SIGKILL)
