"""Benchmark: build the leaderboard site for a synthetic registry of N models x 18 datasets.

Writes ``bench/results/site_build.json``: generation and build wall time, pages, total and
largest page size. Target (issue 7): 1,000 models x 18 datasets in under 10 s, every page < 1 MB.

    python bench/site_build.py [--models 1000] [--datasets all] [--clean-n 200] [--jobs N] [--keep DIR]

Clean per-example predictions are capped at ``--clean-n`` per result (the site never reads them;
they only make the input files larger); everything else has the protocol's real sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from medbench.data import dataset_names
from medbench.site import build_site
from medbench.site.synthetic import write_synthetic

OUT = Path(__file__).resolve().parent / "results" / "site_build.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=1000)
    ap.add_argument("--datasets", default="all", help="comma-separated names, or 'all' (18)")
    ap.add_argument("--clean-n", type=int, default=200)
    ap.add_argument("--jobs", type=int, default=1, help="processes for model pages (build_site jobs=)")
    ap.add_argument("--keep", default=None, help="keep the synthetic inputs and the site in this folder")
    args = ap.parse_args()
    names = dataset_names() if args.datasets == "all" else args.datasets.split(",")
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="medbench-site-bench-"))
    reg, res, site = base / "model_zoo", base / "results", base / "site"
    try:
        t0 = time.perf_counter()
        reused = reg.is_dir() and res.is_dir()
        if not reused:
            write_synthetic(reg, res, names, args.models, clean_n=args.clean_n)
        t_gen = None if reused else round(time.perf_counter() - t0, 2)
        if site.exists():
            shutil.rmtree(site)
        t0 = time.perf_counter()
        report = build_site(site, reg, res, jobs=args.jobs)
        t_build = time.perf_counter() - t0
        sizes = {str(p.relative_to(site)): p.stat().st_size for p in site.rglob("*.html")}
        biggest = max(sizes, key=sizes.get)
        record = {
            "models_per_dataset": args.models, "datasets": len(names), "results": args.models * len(names),
            "generate_s": t_gen, "build_s": round(t_build, 2), "jobs": args.jobs,
            "build_stages_s": {k: round(v, 2) for k, v in report.timings.items()}, "pages": report.pages,
            "files": report.files, "html_bytes_total": sum(sizes.values()),
            "largest_page": biggest, "largest_page_bytes": sizes[biggest],
            "pages_over_1MB": sorted(p for p, s in sizes.items() if s >= 1_000_000),
            "target": "build < 10 s, every page < 1 MB",
            "load_average_at_end": [round(x, 1) for x in os.getloadavg()],
            "cpus": os.cpu_count(), "machine": platform.platform(), "python": platform.python_version(),
        }
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(record, indent=1) + "\n")
        print(json.dumps(record, indent=1))
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
