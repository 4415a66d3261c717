"""Render the fidelity report in headless Chromium and save a PNG: what a stakeholder sees.

    uv run python scripts/screenshot_report.py --lake data/lake --out data/report.png
    uv run python scripts/screenshot_report.py --html report.html --out report.png

With ``--lake`` the HTML report is built first (``obpipeline.fidelity.report.build_report``, next
to the PNG unless ``--html`` names where). Needs Debian's ``chromium`` package
(``apt-get install -y chromium``); run as root it needs ``--no-sandbox``, which is passed.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    raise SystemExit(
        "no Chromium found (looked for " + ", ".join(BROWSERS) + "): apt-get install -y chromium"
    )


def screenshot(html: Path, png: Path, width: int = 1400, height: int = 3000) -> Path:
    """Headless Chromium screenshot of a local HTML file (a fresh throwaway profile each time)."""
    browser = find_browser()
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="obpipeline-chromium-") as profile:
        cmd = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--screenshot={png.resolve()}",
            f"--window-size={width},{height}",
            html.resolve().as_uri(),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    if proc.returncode != 0 or not png.exists():
        sys.stderr.write(proc.stderr[-2000:])
        raise SystemExit(f"chromium failed ({proc.returncode}): no screenshot at {png}")
    return png


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lake", type=Path, help="build the report of this lake first")
    p.add_argument("--html", type=Path, help="the report HTML (input, or output with --lake)")
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    p.add_argument("--mutation", type=Path, help="mutation-test JSON to include in the report")
    p.add_argument("--width", type=int, default=1400)
    p.add_argument("--height", type=int, default=3000)
    args = p.parse_args(argv)
    html = args.html or args.out.with_suffix(".html")
    if args.lake is not None:
        from obpipeline.fidelity.report import build_report

        build_report(args.lake, html, mutation=args.mutation)
    elif not html.exists():
        raise SystemExit(f"no report at {html}: pass --lake to build one")
    print(screenshot(html, args.out, args.width, args.height))
    return 0


if __name__ == "__main__":
    sys.exit(main())
