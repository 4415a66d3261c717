"""``make bench``: run every ``bench/bench_*.py`` module's ``run()``, print one table, write JSON.

Each module returns a list of dicts with ``section`` and ``case`` plus numeric metrics. Results
go to ``data/bench/latest.json`` so runs can be compared; numbers are only comparable within one
run on one machine (the box is shared and noisy), hence ratios are computed in-run by the modules.
"""

from __future__ import annotations

import importlib.util
import json
import platform
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).parent


def main(selected: list[str]) -> int:
    results: list[dict] = []
    failed = []
    for path in sorted(HERE.glob("bench_*.py")):
        name = path.stem.removeprefix("bench_")
        if selected and name not in selected:
            continue
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        assert spec.loader is not None
        started = time.perf_counter()
        try:
            spec.loader.exec_module(module)
            rows = module.run()
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        print(f"# {name}: {time.perf_counter() - started:.1f}s", file=sys.stderr)
        results += rows
    _print_table(results)
    out = Path("data/bench/latest.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"python": platform.python_version(), "machine": platform.machine(), "time": time.time()}
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print(f"wrote {out}")
    return 1 if failed else 0


def _print_table(rows: list[dict]) -> None:
    for row in rows:
        metrics = "  ".join(
            f"{k}={_fmt(v)}" for k, v in row.items() if k not in ("section", "case")
        )
        print(f"{row.get('section', ''):<12} {row.get('case', ''):<44} {metrics}")


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:,.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
