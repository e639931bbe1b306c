"""Bytes on disk (raw and gzip) and peak resident memory: what a model costs to ship and run."""
from __future__ import annotations

import gzip
import os
import resource
import threading


def file_bytes(path: str | os.PathLike) -> int:
    """Size of a file, or of every file below a folder (a SavedModel)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
    return os.path.getsize(path)


def gzip_size(content: bytes) -> int:
    """Size after gzip -9: what sparsity saves in a download or an app bundle."""
    return len(gzip.compress(content, compresslevel=9, mtime=0))


def gzip_bytes(path: str | os.PathLike) -> int:
    """:func:`gzip_size` of a file, or the sum over the files below a folder."""
    if os.path.isdir(path):
        return sum(gzip_size(_read(os.path.join(d, f))) for d, _, fs in os.walk(path) for f in fs)
    return gzip_size(_read(path))


def _read(path: str | os.PathLike) -> bytes:
    with open(path, "rb") as f:
        return f.read()


class PeakMemory:
    """Peak resident memory (MiB) of this process while the ``with`` block runs.

    On Linux the kernel's high-water mark is reset on entry (``/proc/self/clear_refs``),
    so the figure belongs to the block; elsewhere, or if the reset is refused, a sampling
    thread takes the maximum every 20 ms.
    """

    def __init__(self) -> None:
        self.mb = 0.0
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None
        self._kernel_hwm = False

    def __enter__(self) -> "PeakMemory":
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self._kernel_hwm = _proc_status_kb("VmHWM") is not None
        except OSError:
            self._kernel_hwm = False
        if not self._kernel_hwm:
            self._sampler = threading.Thread(target=self._sample, daemon=True)
            self._sampler.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.mb = max(self.mb, current_rss_mb())

    def __exit__(self, *exc) -> None:
        if self._kernel_hwm:
            self.mb = _proc_status_kb("VmHWM") / 1024
        else:
            self._stop.set()
            self._sampler.join()
            self.mb = max(self.mb, current_rss_mb())


def _proc_status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def current_rss_mb() -> float:
    kb = _proc_status_kb("VmRSS")
    if kb is not None:
        return kb / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / (1024 * 1024) if os.uname().sysname == "Darwin" else peak / 1024
