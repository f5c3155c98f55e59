"""`lq export`: terminal rollouts with their attempts, spans and triplets, as Parquet or JSON Lines files."""

from __future__ import annotations

from .run import FORMATS, TABLES, ExportError, ExportResult, export_namespace

__all__ = ["FORMATS", "TABLES", "ExportError", "ExportResult", "export_namespace"]
