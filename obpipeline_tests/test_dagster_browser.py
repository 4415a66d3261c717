"""The Dagster UI in a real browser after a fault drill (slow; ``make test-ui``).

Three simulated days in one range run, the middle one with dropped depth messages, then the clean
days again alone (as after a backfill's retry); then a ``dagster-webserver`` on 127.0.0.1 over the
same instance and the reports server, and Playwright driving Debian's ``chromium`` (Playwright
downloads no browser here) through the asset graph, the ``raw_id_chain`` check's *Partitions* tab,
where the drilled day must show as failed and the others as passed, the D-1 dependency of
``book_checkpoint`` and the fidelity report's link. Screenshots are saved under
``data/screenshots/``.
"""

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import warnings

import dagster as dg
import pytest
from dagster._core.instance.ref import InstanceRef

from obpipeline.defs import build_definitions
from obpipeline.defs.config import REPO_ROOT, load_config
from obpipeline.defs.local import materialize_range
from obpipeline.defs.reports import server as reports_server
from obpipeline_tests.test_dagster_ui import BAD, DAYS, write_config

warnings.filterwarnings("ignore")
pytestmark = pytest.mark.slow

SHOTS = REPO_ROOT / "data" / "screenshots"
CHAIN = "binance_usdm/btcusdt"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def webserver(tmp_path_factory):
    """A drilled instance and a webserver over it; yields the base URL."""
    if not shutil.which("chromium"):
        pytest.fail("Debian's chromium is missing: `make test-ui` installs it (apt-get)")
    tmp = tmp_path_factory.mktemp("browser")
    home = tmp / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    defs_file = write_config(tmp, reports_url=f"http://127.0.0.1:{_free_port()}")
    cfg = load_config(tmp / "obpipeline.yaml")
    defs = build_definitions(cfg)
    instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))
    inst, log = cfg.instruments[0], tmp / "run.log"
    run = materialize_range(defs, instance, inst, DAYS[0], DAYS[-1], log_file=log)
    assert not run.success and {c["partition"] for c in run.failed_checks} == {BAD}
    for day in (DAYS[0], DAYS[-1]):
        assert materialize_range(defs, instance, inst, day, log_file=log).success
    reports = reports_server(cfg)
    threading.Thread(target=reports.serve_forever, daemon=True).start()
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dagster_webserver",
            "-f",
            str(defs_file),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],  # fmt: skip
        env={**os.environ, "DAGSTER_HOME": str(home)},
        stdout=(tmp / "webserver.log").open("wb"),  # noqa: SIM115 - lives as long as the server
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                urllib.request.urlopen(f"{base}/server_info", timeout=5)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((tmp / "webserver.log").read_text()[-2000:]) from None
                time.sleep(2)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=60)
        reports.shutdown()
        reports.server_close()


@pytest.fixture(scope="module")
def page(webserver):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(180_000)  # a loaded machine renders slowly
        # the first visit shows a newsletter dialog over the page
        page.add_locator_handler(
            page.get_by_text("Join the Dagster community"),
            lambda: page.get_by_role("button", name="Skip").click(),
        )
        yield page
        browser.close()


def test_asset_graph_shows_every_dataset(webserver, page):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.goto(f"{webserver}/asset-groups", wait_until="networkidle")
    for name in ("raw_book_events", "golden_bbo", "quarantine", "replay_counters",
                 "book_features_1s", "fidelity_report"):  # fmt: skip
        page.get_by_text(name, exact=True).first.wait_for()
    page.wait_for_timeout(2000)
    page.screenshot(path=str(SHOTS / "asset_graph.png"))


def test_check_partitions_tab_shows_the_failed_day(webserver, page):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.goto(f"{webserver}/assets/{CHAIN}/raw_book_events?view=checks&checkDetail=raw_id_chain")
    page.get_by_text("raw_quarantine").first.wait_for()
    page.get_by_role("tab", name="Partitions").last.click()  # the check's, not the asset's
    page.get_by_text("Failed (1)").wait_for()
    page.get_by_text("Passed (2)").wait_for()
    page.wait_for_timeout(1000)
    page.screenshot(path=str(SHOTS / "check_partitions.png"))
    # only the failed days: the drilled day is the one left in the list
    for status in ("Execution Failed", "In Progress", "Missing", "Skipped", "Passed"):
        page.get_by_text(status + " (").click()
    page.get_by_text("1 Partitions Selected").wait_for()
    page.wait_for_timeout(1000)
    page.screenshot(path=str(SHOTS / "check_partitions_failed_only.png"))
    page.get_by_text(BAD, exact=True).first.click()
    page.get_by_text("sequence gap(s) with no snapshot after them").first.wait_for()
    page.screenshot(path=str(SHOTS / "check_failed_day_detail.png"))


def test_checkpoint_shows_its_d_minus_1_dependency(webserver, page):
    """The chained asset says so on its page (the graph draws no self-loop)."""
    page.goto(f"{webserver}/assets/{CHAIN}/book_checkpoint")
    said = page.get_by_text("This asset depends on earlier partitions of itself.").first
    said.wait_for()
    said.scroll_into_view_if_needed()
    page.wait_for_timeout(1000)
    page.screenshot(path=str(SHOTS / "book_checkpoint_d_minus_1.png"))


def test_report_link_opens_the_html_report(webserver, page):
    """fidelity_report's ``html`` link opens the HTML report in the browser (served over HTTP)."""
    page.goto(f"{webserver}/assets/{CHAIN}/fidelity_report?view=events")
    link = page.get_by_role("link", name=f"fidelity_report_{DAYS[0]}_{DAYS[-1]}.html").first
    link.wait_for()
    link.scroll_into_view_if_needed()
    page.wait_for_timeout(1000)
    page.screenshot(path=str(SHOTS / "fidelity_report_links.png"))
    with page.context.expect_page() as opened:
        link.click()
    report = opened.value
    report.wait_for_load_state()
    assert report.url.startswith("http://127.0.0.1:"), report.url
    report.get_by_text("Gate A").first.wait_for()
    report.screenshot(path=str(SHOTS / "fidelity_report_html.png"))
    report.close()
