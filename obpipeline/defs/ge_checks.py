"""Great Expectations suites as partitioned, blocking check steps on the written lake files.

One step per checked asset, looping over the run's partition keys like the assets do, and
stamping each evaluation with its day. GE is imported lazily (inside ``expectations.validate``),
so loading the definitions stays fast and the 8–16 s import is paid once per run process.
"""

import time

import dagster as dg

from obpipeline.defs import expectations
from obpipeline.defs.assets import RAW, SNAPSHOTS, Chain, evaluation


def build_ge_checks(chain: Chain) -> list[dg.AssetChecksDefinition]:
    out = []
    for dataset in (RAW, SNAPSHOTS):
        spec = dg.AssetCheckSpec(
            "ge_suite",
            asset=chain.key(dataset),
            description=f"Great Expectations suite for {dataset} (obpipeline/defs/expectations.py)",
            blocking=True,
            partitions_def=chain.partitions,
        )
        out.append(_ge_check(chain, dataset, spec))
    return out


def _ge_check(chain: Chain, dataset: str, spec: dg.AssetCheckSpec) -> dg.AssetChecksDefinition:
    @dg.multi_asset_check(
        specs=[spec],
        name=f"{chain.group}__{dataset}__ge_suite",
        can_subset=False,
    )
    def ge_suite(context: dg.AssetCheckExecutionContext):
        op = context.op_execution_context
        for day in sorted(op.partition_keys):
            path = chain.path(dataset, day)
            if not path.exists():  # the asset failed that day: its own check already says why
                continue
            verdict = expectations.validate_parquet(dataset, path)
            yield evaluation(context.instance, spec.asset_key, day, verdict, time.time())
        yield dg.Output(
            None, output_name=op.assets_def.get_output_name_for_asset_check_key(spec.key)
        )

    return ge_suite
