"""``obpipeline mutation-test``: Gate B. Every FIDELITY.md mutant on simulated and real captures."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT_REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "binance"


def register(sub: argparse._SubParsersAction) -> None:
    help_ = (
        "inject every FIDELITY.md mutant into simulated days and the real captures; print "
        "mutant × detected × detection latency; exit 1 on a false alarm or a missed mutant"
    )
    p = sub.add_parser("mutation-test", help=help_, description=help_)
    p.add_argument("--sim-days", type=int, default=1, help="simulated days to mutate (0: none)")
    p.add_argument("--sim-start", default="2024-03-05", help="first simulated day")
    p.add_argument(
        "--sim-hours", type=float, help="mutate only the first H hours of each simulated day"
    )
    p.add_argument("--profile", default="demo", help="simulator profile")
    p.add_argument(
        "--real",
        type=Path,
        default=DEFAULT_REAL,
        help="folder of the real Binance captures (default ../shared/data/binance)",
    )
    p.add_argument("--no-real", action="store_true", help="skip the real captures")
    p.add_argument("--only", nargs="*", help="real captures whose name contains one of these")
    p.add_argument(
        "--mutants", help="comma-separated mutant names (default: all); see --list", default=None
    )
    p.add_argument("--fast", action="store_true", help="only the fast subset of mutants")
    p.add_argument(
        "--clean-only", action="store_true", help="only the clean runs (the false-alarm check)"
    )
    p.add_argument(
        "--chain",
        action="store_true",
        help="simulated days after the first start from the previous day's checkpoint",
    )
    p.add_argument("--list", action="store_true", help="list the mutants and exit")
    p.add_argument("--seed", type=int, default=0, help="fault-injection seed")
    p.add_argument("--engine", default=None, help="replay engine (default: the default engine)")
    p.add_argument("--json", type=Path, help="also write every run as JSON here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from obpipeline import book
    from obpipeline.drills import mutation as M

    if args.list:
        for m in M.MUTANTS:
            print(f"{m.name:16s} {m.spec:24s} {m.description}{'  [fast]' if m.fast else ''}")
        return 0
    mutants = list(M.MUTANTS)
    if args.mutants:
        mutants = [M.mutant(n.strip()) for n in args.mutants.split(",") if n.strip()]
    if args.fast:
        mutants = [m for m in mutants if m.fast]
    if args.clean_only:
        mutants = []
    engine = args.engine or book.DEFAULT_ENGINE
    datasets = []
    if args.sim_days > 0:
        print(f"simulating {args.sim_days} day(s) from {args.sim_start} …", file=sys.stderr)
        datasets += M.sim_datasets(
            args.sim_days,
            args.sim_start,
            args.sim_hours,
            args.profile,
            chain=args.chain,
            engine=engine,
        )
    if not args.no_real:
        if args.real.is_dir():
            datasets += M.real_datasets(args.real, args.only, engine=engine)
        else:
            print(f"real captures not found at {args.real}: skipped", file=sys.stderr)

    def progress(r: M.RunResult) -> None:
        state = "pass" if r.passed else "FAIL"
        print(
            f"  {r.dataset:48s} {r.mutant:16s} injected {r.injected:7d}  gate A {state}"
            f"  ({r.seconds:.1f} s)",
            file=sys.stderr,
        )

    results = M.run_matrix(datasets, mutants, args.seed, engine=engine, progress=progress)
    print(M.table(results))
    summary = M.summary(results)
    print()
    print(json.dumps(summary))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {"summary": summary, "runs": [r.to_dict() for r in results]}, indent=1, default=str
            )
        )
    return 1 if summary["false_alarms"] or summary["missed"] else 0
