"""The HTML fidelity reports over HTTP, so the Dagster UI's links to them open.

A browser does not follow a ``file://`` link from an ``http://`` page such as the Dagster UI
(measured with Chromium: the click opens nothing). ``make ui`` therefore serves
``<lake>/_reports`` at ``reports.url`` (``obpipeline.yaml``) beside the UI, and
``fidelity_report``'s ``html`` and ``latest`` metadata are links there. Without ``reports.url``
they are ``file://`` URLs, to paste into the address bar.

``python -m obpipeline.defs.reports`` serves the folder of the configured lake.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import urllib.parse
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from obpipeline.defs.config import PlatformConfig, load_config


def reports_dir(cfg: PlatformConfig) -> Path:
    """Where ``fidelity_report`` writes its HTML files (one folder per venue and symbol)."""
    return Path(cfg.lake) / "_reports"


def report_url(cfg: PlatformConfig, path: Path | str) -> str:
    """The address of one HTML report: under ``reports.url`` when set, else ``file://``."""
    path = Path(path).resolve()
    if cfg.reports_url:
        try:
            relative = path.relative_to(reports_dir(cfg).resolve())
        except ValueError:
            return path.as_uri()
        return f"{cfg.reports_url.rstrip('/')}/{urllib.parse.quote(relative.as_posix())}"
    return path.as_uri()


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # one line per request would flood the UI's terminal
        pass


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        """A browser that closes the tab mid-download is no error worth a traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def server(cfg: PlatformConfig) -> ThreadingHTTPServer:
    """An HTTP server of the reports folder on ``reports.url``'s host and port (not started)."""
    if not cfg.reports_url:
        raise SystemExit("reports.url is not set in obpipeline.yaml: nothing to serve")
    url = urllib.parse.urlsplit(cfg.reports_url)
    folder = reports_dir(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    handler = functools.partial(_Quiet, directory=str(folder))
    return _Server((url.hostname or "127.0.0.1", url.port or 80), handler)


if __name__ == "__main__":
    cfg = load_config()
    try:
        httpd = server(cfg)
    except OSError as exc:  # e.g. the port is taken: the UI runs on, its report links do not
        raise SystemExit(f"cannot serve the reports on {cfg.reports_url}: {exc}") from None
    print(f"fidelity reports of {reports_dir(cfg)} on {cfg.reports_url}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C in `make ui`: stop quietly
        httpd.serve_forever()
