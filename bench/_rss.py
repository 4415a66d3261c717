"""Peak resident memory of the current process, for the benches' per-process figures."""

from obpipeline.procstat import peak_rss_mb

__all__ = ["peak_rss_mb"]
