"""Wall time and peak memory of one stage of work (encode, decode, enhance, metrics).

Peak memory is the process's peak resident set size while the stage ran: on Linux the
kernel's high-water mark (VmHWM) is reset before the stage by writing 5 to
/proc/self/clear_refs and read after it. Where that is impossible the peak is unknown
(None) rather than the process's lifetime peak, which would belong to some other stage.
On CUDA, torch's peak allocated memory is reset and read the same way.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass
class Measurement:
    seconds: float = 0.0
    peak_rss_mib: float | None = None
    peak_cuda_mib: float | None = None

    def to_dict(self) -> dict:
        fields = {"seconds": self.seconds, "peak_rss_mib": self.peak_rss_mib}
        if self.peak_cuda_mib is not None:
            fields["peak_cuda_mib"] = self.peak_cuda_mib
        return fields

    @classmethod
    def from_dict(cls, fields) -> "Measurement":
        """Reads `to_dict`'s output back; anything malformed (a tampered cache file) reads as unknown."""
        if not isinstance(fields, dict):
            fields = {}

        def number(name: str) -> float | None:
            value = fields.get(name)
            return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

        return cls(seconds=number("seconds") or 0.0, peak_rss_mib=number("peak_rss_mib"), peak_cuda_mib=number("peak_cuda_mib"))


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mib() -> float | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / MIB
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cuda():
    # Only a run that already uses torch on a GPU has CUDA memory worth reporting;
    # importing torch here would cost a codec-only comparison seconds.
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda
    return None


@contextmanager
def measure() -> Iterator[Measurement]:
    """Fills the yielded Measurement when the block ends (also if it raises)."""
    measurement = Measurement()
    rss_known = _reset_peak_rss()
    cuda = _cuda()
    if cuda is not None:
        cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    try:
        yield measurement
    finally:
        measurement.seconds = time.perf_counter() - start
        measurement.peak_rss_mib = _peak_rss_mib() if rss_known else None
        if cuda is not None:
            measurement.peak_cuda_mib = cuda.max_memory_allocated() / MIB


@dataclass
class StageTotals:
    """A stage summed over many measurements: total seconds, highest peaks."""

    seconds: float = 0.0
    count: int = 0
    peak_rss_mib: float | None = None
    peak_cuda_mib: float | None = None

    def add(self, measurement: Measurement) -> None:
        self.seconds += measurement.seconds
        self.count += 1
        for name in ("peak_rss_mib", "peak_cuda_mib"):
            value = getattr(measurement, name)
            if value is not None:
                current = getattr(self, name)
                setattr(self, name, value if current is None else max(current, value))

    def to_dict(self) -> dict:
        fields = {"seconds": self.seconds, "runs": self.count, "peak_rss_mib": self.peak_rss_mib}
        if self.peak_cuda_mib is not None:
            fields["peak_cuda_mib"] = self.peak_cuda_mib
        return fields
