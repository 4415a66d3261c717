"""``obpipeline demo``: materialise the whole Dagster chain for the last days, in process.

On a fresh clone this simulates the last 3 UTC days (the default simulator source of
``obpipeline.yaml``), runs every asset and check over them in one run, in order, against the
Dagster instance under ``$DAGSTER_HOME`` (default ``data/dagster``) — the one ``make ui`` opens, so
the runs, checks and metadata are there to browse afterwards.
"""

import argparse
import time
from datetime import UTC, date, datetime, timedelta

STEPS = ("raw_book_events", "book_checkpoint", "book_snapshots", "book_features",
         "fidelity_metrics", "fidelity_report")  # fmt: skip


def register(sub: argparse._SubParsersAction) -> None:
    help_ = "materialise the whole Dagster chain for the last days (simulator by default)"
    p = sub.add_parser("demo", help=help_, description=__doc__)
    p.add_argument("--days", type=int, default=3, help="how many days, ending yesterday (UTC)")
    p.add_argument("--end", type=date.fromisoformat, help="last day (default: yesterday, UTC)")
    p.add_argument("--no-ge", action="store_true", help="skip the Great Expectations suites")
    p.set_defaults(func=run_demo)


def progress(event) -> None:
    """One line per step and day as the run stores it (the step's own dataset), with seconds."""
    if event.event_type_value == "ASSET_MATERIALIZATION":
        m = event.event_specific_data.materialization
        name = m.asset_key.path[-1]
        if name in STEPS:
            seconds = getattr(m.metadata.get("seconds"), "value", 0) or 0
            print(f"  {name:<17} {m.partition}  ok      {seconds:6.1f} s", flush=True)
    elif event.event_type_value == "STEP_FAILURE":
        print(f"  step failed: {event.step_key}", flush=True)


def run_demo(args: argparse.Namespace) -> int:
    import warnings

    warnings.filterwarnings("ignore")
    import dagster as dg

    from obpipeline import lake
    from obpipeline.defs import build_definitions, load_config, partitions
    from obpipeline.defs.local import dagster_home, materialize_range

    home = dagster_home()
    cfg = load_config()
    last = args.end or datetime.now(UTC).date() - timedelta(days=1)
    first = last - timedelta(days=args.days - 1)
    if cfg.window_start is None or cfg.window_start > first:
        cfg = cfg.with_(window_start=min(cfg.start, first))
    if cfg.window_end is not None and cfg.window_end <= last:
        cfg = cfg.with_(window_end=last + timedelta(days=1))
    if args.no_ge:
        cfg = cfg.with_(great_expectations=False)
    defs = build_definitions(cfg)
    keys = partitions(cfg).get_partition_keys()
    assert first.isoformat() in keys and last.isoformat() in keys, (first, last)

    instance = dg.DagsterInstance.get()
    status = 0
    for inst in cfg.instruments:
        print(
            f"obpipeline demo: {inst.venue_id} {inst.symbol} from the {inst.source.kind} source, "
            f"{first} .. {last} ({args.days} days), lake {cfg.lake}, DAGSTER_HOME {home}"
        )
        log_file = home / "logs" / "demo.log"
        print(f"  Dagster's event log (DEBUG): {log_file}")
        started = time.perf_counter()
        run = materialize_range(
            defs, instance, inst, first, last, log_file=log_file, on_event=progress
        )
        seconds = time.perf_counter() - started
        failed = {(c["asset"], c["partition"]) for c in run.failed_checks}
        days = [(first + timedelta(days=k)).isoformat() for k in range(args.days)]
        for step in STEPS:  # what did not land (the progress lines showed what did)
            for day in days:
                if (step, day) in run.metadata:
                    continue
                what = "FAILED  (see the failed checks below)" if (step, day) in failed else (
                    "not run (upstream failed)"
                )  # fmt: skip
                print(f"  {step:<17} {day}  {what}")
        print(f"  run {run.run_id}: {'success' if run.success else 'FAILED'} in {seconds:.0f} s")
        print("  day         messages  gaps  resyncs  invalid  golden compared  mismatched  gate A")
        for day in (first + timedelta(days=k) for k in range(args.days)):
            m = run.metadata.get(("fidelity_metrics", day.isoformat()))
            s = run.metadata.get(("book_snapshots", day.isoformat()), {})
            if m is None:
                print(f"  {day}  (not materialised: see the failed checks below)")
                continue

            print(
                f"  {day}  {s.get('messages', 0):>8}  {m['gaps']:>4}  {m['resyncs']:>7}  "
                f"{m['invalid_rows']:>7}  {m['golden_compared']:>15}  "
                f"{m['golden_mismatched']:>10}  {'pass' if m['integrity_ok'] else 'FAIL'}"
            )
        report = run.metadata.get(("fidelity_report", last.isoformat()))
        if report and report.get("html_file"):
            print(f"  HTML fidelity report: {report['html_file']}")
            if str(report["html"]).startswith("http"):
                print(f"    in the UI (served by `make ui`): {report['html']}")
        if report:
            print(
                f"  rolling report up to {last}: {report['days']} day(s), "
                f"{report['days_passing']} passing Gate A, golden records compared "
                f"{report.get('golden_compared', 0)}, mismatched {report.get('golden_mismatched', 0)}"
            )
        for c in run.failed_checks:
            print(
                f"  check failed: {c['asset']}.{c['check']} [{c['severity']}] {c['partition']}: "
                f"{c['description']}"
            )
        for step, error in run.step_errors.items():
            print(f"  step failed: {step}: {error.strip().splitlines()[0][:300]}")
        print("  outputs:")
        for dataset in sorted({*run.materialized, "golden_bbo", "golden_depth", "trades"}):
            path = lake.partition_dir(dataset, inst.venue_id, inst.symbol, last, cfg.lake)
            if path.exists():
                print(f"    {path.parent}/date=*/part-0.parquet")
        if not run.success:
            status = 1
    print(f"  alerts (when the daemon runs): {cfg.alert_log}")
    print("Open the Dagster UI with `make ui`, then http://127.0.0.1:3000 (Assets, Runs, Checks).")
    return status
