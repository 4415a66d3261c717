"""The single Dagster entry point: ``obpipeline.definitions:defs``.

Loaded by ``workspace.yaml`` (``dagster dev -w``), ``[tool.dagster]`` and ``[tool.dg]`` in
pyproject.toml. What it builds is set in ``obpipeline.yaml`` (+ environment overrides, see
``obpipeline/defs/config.py`` and docs/OPERATIONS.md).
"""

from __future__ import annotations

from obpipeline.defs import build_definitions, load_config

defs = build_definitions(load_config())
