"""The leaderboard site: registry + results -> static HTML with tables, plots and downloads.

``build_site(out, registry, results)`` is the one entry point (``medbench leaderboard build``).
Modules: ``load`` (reading inputs), ``ranking`` (tie groups), ``table`` (rows and tracks),
``plots``/``svg`` (inline SVG), ``export`` (CSV and the versioned ``results.json``), ``build``.
"""

from .build import BuildReport, build_site

__all__ = ["BuildReport", "build_site"]
