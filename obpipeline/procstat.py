"""This process's peak resident memory: what a run costs, reported by the CLI, assets and benches."""

from __future__ import annotations

import resource


def peak_rss_mb() -> float:
    """``VmHWM`` of this process image; ``ru_maxrss`` would carry a parent's peak across exec."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
