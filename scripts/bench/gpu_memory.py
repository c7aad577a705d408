"""Peak GPU memory of a process as the driver sees it (nvidia-smi's per-process used memory, polled), so that our
side and PyTorch's are measured the same way: the CUDA context, every allocation and any allocator cache count.

    with GpuMemoryPoller(pid) as poller: ...     # poller.peak_mb afterwards (None where nvidia-smi is missing)
"""

import shutil
import subprocess
import threading


def used_mb(pids):
    """MiB of GPU memory each of `pids` holds now, summed; None where nvidia-smi cannot say."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    total = 0
    for line in out.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) == 2 and fields[0].isdigit() and int(fields[0]) in pids and fields[1].isdigit():
            total += int(fields[1])
    return total


class GpuMemoryPoller:
    """Polls the GPU memory of one process every `interval` seconds on a thread, keeping the peak."""

    def __init__(self, pid, interval=0.1):
        self.pids = {pid}
        self.interval = interval
        self.peak_mb = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self):
        while not self._stop.is_set():
            now = used_mb(self.pids)
            if now is not None:
                self.peak_mb = max(self.peak_mb or 0, now)
            self._stop.wait(self.interval)

    def __enter__(self):
        if shutil.which("nvidia-smi"):
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
