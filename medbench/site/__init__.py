"""The leaderboard site: registry + results -> static HTML with tables, plots and downloads.

``build_site(out, registry, results)`` is the one entry point (``medbench leaderboard build``).
Modules: ``build`` (the stages and the build cache), ``dataset_pages`` (one dataset's pages, a pure function
of its inputs), ``load`` (reading inputs), ``ranking`` (tie groups), ``table`` (rows and tracks), ``plots``
(figures, drawn by ``medbench.svg``), ``export`` (CSV and the versioned ``results.json``), ``render`` (the
Jinja environment of ``templates/`` and the writer). Markup lives in the templates.
"""

from .build import BuildReport, build_site

__all__ = ["BuildReport", "build_site"]
