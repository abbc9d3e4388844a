"""Benchmark: build the leaderboard site for a synthetic registry of N models x 18 datasets, side by side
with the build as it was before incremental builds (the baseline), in one process.

Writes ``bench/results/site_build.json``: for the baseline (``medbench/site`` and the templates of
``BASELINE_COMMIT``, extracted from git into a temporary package) and for today's build: a full build
into an empty folder, a rebuild with nothing changed, and an incremental rebuild after one model's
result changed (re-evaluated: new numbers, so ranks move); the ratios against the baseline; which files
differ from the baseline's (its templates are older) and from a build by ``SAME_AS_COMMIT``'s code (untimed:
only what changed on purpose since then may differ), and whether the incremental rebuild equals a full
build of the same inputs (after a last re-evaluation dated now, after every other record, timed too);
pages, sizes and the load average. Target (issue 24, the plain build): 1,000 x 18 in at most 25 s, an
incremental rebuild in at most 3 s. This machine's speed drifts by up to ~40% within a minute: full builds
are timed --full-repeats times, the baseline's and today's taking turns, incremental rebuilds --repeats
times; the best run of each is the figure, and every run is in the JSON.

    python bench/site_build.py [--models 1000] [--datasets all] [--clean-n 200] [--jobs N]
                               [--keep DIR] [--no-baseline] [--same-as COMMIT] [--repeats 3]
                               [--full-repeats 3]

Clean per-example predictions are capped at ``--clean-n`` per result (the site never reads them;
they only make the input files larger); everything else has the protocol's real sizes.
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from medbench.data import dataset_names
from medbench.schema.result import EvaluationResult
from medbench.site import build_site
from medbench.site.build import CACHE as STATE

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the synthetic registry and results of the site tests
from site_synthetic import _result, model_ids, write_synthetic  # noqa: E402
OUT = REPO / "bench" / "results" / "site_build.json"
LITERATURE = REPO / "leaderboard" / "literature.yaml"
BASELINE_COMMIT = "41a0104fe123e73404421163ba973806837ac729"  # main before incremental builds (issue 16)
# The bytes of today's build are compared with this commit's (not timed): the baseline's pages differ by the
# template changes made since it (navigation links, study notes), this one's only by what changed on purpose.
# (main before the plain build of issue 24: the rewrite keeps its bytes)
SAME_AS_COMMIT = "9feb09a997356eabc0b6d77aeb0267d69f9a2612"


def baseline_build(tmp: Path, commit: str = BASELINE_COMMIT, package: str = "medbench_site_baseline"):
    """``build_site`` of ``commit`` and its leaderboard folder (templates, static), from git."""
    # the study results and the lite track, where the commit has them: its pages show them
    extra = [p for p in ("leaderboard/studies", "leaderboard/lite") if subprocess.run(
        ["git", "-C", str(REPO), "cat-file", "-e", f"{commit}:{p}"], capture_output=True).returncode == 0]
    data = subprocess.run(["git", "-C", str(REPO), "archive", commit, "medbench/site", "medbench/metrics.py",
                           "leaderboard/templates", "leaderboard/static", *extra], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(tmp, filter="data")
    pkg = tmp / package
    (tmp / "medbench" / "site").rename(pkg)
    (tmp / "medbench" / "metrics.py").rename(pkg / "_metrics.py")  # the commit's bootstrap (its ranking imports it)
    for py in pkg.glob("*.py"):  # the package's own modules stay relative; medbench's are absolute
        text = py.read_text().replace("from ..metrics import", "from ._metrics import")
        text = re.sub(r"from \.\.(\w)", r"from medbench.\1", text).replace("from .. import", "from medbench import")
        py.write_text(text)
    sys.path.insert(0, str(tmp))
    module = importlib.import_module(package)
    return module.build_site, tmp / "leaderboard"


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and STATE not in p.relative_to(root).parts}


def differences(a: Path, b: Path) -> list[str]:
    ta, tb = tree(a), tree(b)
    return sorted(k for k in ta.keys() | tb.keys() if ta.get(k) != tb.get(k))


def reevaluate(reg: Path, res: Path, dataset: str, model_id: str, seed: int, started_at: str | None = None) -> None:
    """Replace one model's result by a new, valid one (as if re-evaluated): every number changes (and its date,
    when ``started_at`` is given)."""
    weights = json.loads((res / dataset / f"{model_id}.json").read_text())["provenance"]["weights_sha256"]
    rec = _result(model_id, dataset, np.random.default_rng(seed), hostile=False, clean_n=200, weights_sha256=weights)
    if started_at is not None:
        rec["provenance"]["started_at"] = started_at
    EvaluationResult.model_validate(rec).to_json(res / dataset / f"{model_id}.json", indent=None)


def file_create_ms(work: Path, name: str, n: int = 2000) -> float:
    """Milliseconds to create one small file in ``work`` now (the files are left in place).

    On ext4 without a journal (this machine's root file system), creating a file within minutes of many
    deletions costs up to ~0.6 ms instead of ~0.04 ms: the inode allocator checks recently freed inodes one
    by one. A site build creates 18,000 files, so the figure is recorded beside the timings; the bench
    itself deletes nothing until the end, so that its own clean-up never slows a timed build."""
    folder = work / name
    folder.mkdir()
    t0 = time.perf_counter()
    for i in range(n):
        os.close(os.open(folder / f"f{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    return round((time.perf_counter() - t0) * 1000 / n, 3)


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, round(time.perf_counter() - t0, 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=1000)
    ap.add_argument("--datasets", default="all", help="comma-separated names, or 'all' (18)")
    ap.add_argument("--clean-n", type=int, default=200)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                    help="processes (build_site jobs=, the same for both builds; default: one per CPU, as the CLI)")
    ap.add_argument("--keep", default=None, help="keep the synthetic inputs in this folder (re-used when there)")
    ap.add_argument("--no-baseline", action="store_true", help="time today's build only (development)")
    ap.add_argument("--same-as", default=SAME_AS_COMMIT, metavar="COMMIT",
                    help="also build with this commit's site code (untimed) and list the files that differ "
                         "(default: the commit after which pages show their own data's date, whose bytes every "
                         "later change keeps; '' to skip)")
    ap.add_argument("--repeats", type=int, default=3,
                    help="incremental rebuilds timed (the best run is the figure; the median is reported too)")
    ap.add_argument("--full-repeats", type=int, default=3,
                    help="full builds timed, the baseline's and today's taking turns (the best of each is the figure)")
    ap.add_argument("--no-check", action="store_true",
                    help="skip the full build that the incremental one is compared with (saves a full build)")
    args = ap.parse_args()
    names = dataset_names() if args.datasets == "all" else args.datasets.split(",")
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="medbench-site-bench-"))
    work = Path(tempfile.mkdtemp(prefix="medbench-site-bench-out-"))
    reg, res = base / "model_zoo", base / "results"
    load_start = [round(x, 1) for x in os.getloadavg()]
    try:
        reused = reg.is_dir() and res.is_dir()
        if not reused:
            _, t_gen = timed(write_synthetic, reg, res, names, args.models, clean_n=args.clean_n)
        # the inputs are changed below: work on a copy so that --keep stays the generated set
        inp_reg, inp_res = work / "model_zoo", work / "results"
        shutil.copytree(reg, inp_reg)
        shutil.copytree(res, inp_res)
        record: dict = {"models_per_dataset": args.models, "datasets": len(names), "results": args.models * len(names),
                        "generate_s": None if reused else round(t_gen, 2), "jobs": args.jobs,
                        "baseline_commit": BASELINE_COMMIT,
                        "file_create_ms_at_start": file_create_ms(work, "create-probe-start")}
        kw = {"literature": LITERATURE, "jobs": args.jobs}

        # full builds, each into a new folder, the baseline's and today's taking turns (--full-repeats times):
        # this machine's speed drifts by up to ~40% within a minute, so the figure is the best run of each
        legacy, legacy_lb = baseline_build(work / "baseline") if not args.no_baseline else (None, None)
        base_runs, full_runs = [], []
        for k in range(args.full_repeats):
            if legacy is not None:
                base_runs.append(timed(legacy, work / f"site-baseline-{k}", inp_reg, inp_res,
                                       leaderboard_dir=legacy_lb, **kw))
            full_runs.append(timed(build_site, work / ("site" if k == 0 else f"site-{k}"), inp_reg, inp_res, **kw))
        if legacy is not None:
            report, t = min(base_runs, key=lambda r: r[1])
            record["baseline"] = {"full_s": t, "runs_s": [r[1] for r in base_runs],
                                  "stages_s": {k: round(v, 2) for k, v in report.timings.items()}}
        report, t_full = min(full_runs, key=lambda r: r[1])
        pages, files = report.pages, report.files
        stages = {k: round(v, 2) for k, v in report.timings.items()}
        if not args.no_baseline:
            same = differences(work / "site-baseline-0", work / "site")
            record["identical_to_baseline"] = same == []
            record["files_differing_from_baseline"] = same[:20]
        if args.same_as:
            previous, previous_lb = baseline_build(work / "same-as", args.same_as, "medbench_site_same_as")
            previous(work / "site-same-as", inp_reg, inp_res, leaderboard_dir=previous_lb, **kw)
            same = differences(work / "site-same-as", work / "site")
            record["same_as_commit"] = args.same_as
            record["files_differing_from_same_as_commit"] = {"count": len(same), "files": same[:40]}
        _, t_noop = timed(build_site, work / "site", inp_reg, inp_res, **kw)

        # one model re-evaluated: its dataset is loaded and ranked again, and only the pages that changed
        dataset, model_id = names[len(names) // 2], model_ids(args.models)[args.models // 2]
        # as the full builds: the incremental case is timed --repeats times (a new re-evaluation of the same
        # model each time), and the best run is the figure
        runs = []
        for k in range(args.repeats):
            reevaluate(inp_reg, inp_res, dataset, model_id, seed=12345 + k)
            runs.append(timed(build_site, work / "site", inp_reg, inp_res, **kw))
        inc, t_inc = min(runs, key=lambda r: r[1])
        t_inc_median = sorted(t for _, t in runs)[len(runs) // 2]
        # a re-evaluation dated now, after every other record: the home page's date changes, the other datasets'
        # pages do not show it (they were all rendered again before pages showed their own data's date)
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        reevaluate(inp_reg, inp_res, dataset, model_id, seed=999, started_at=now)
        newer, t_newer = timed(build_site, work / "site", inp_reg, inp_res, **kw)
        if not args.no_check:
            build_site(work / "site-full", inp_reg, inp_res, full=True, **kw)
        record["new"] = {
            "full_s": t_full, "full_runs_s": [t for _, t in full_runs], "stages_s": stages, "noop_rebuild_s": t_noop,
            "incremental_s": t_inc, "incremental_median_s": t_inc_median, "incremental_runs_s": [t for _, t in runs],
            "incremental_stages_s": {k: round(v, 2) for k, v in inc.timings.items()},
            "incremental_change": f"{dataset}/{model_id}: result replaced by a re-evaluation (every number differs), "
                                  f"{args.repeats} times; the best run (the median too)",
            "incremental_rendered_datasets": inc.rendered_units,
            "incremental_newer_date_s": t_newer, "incremental_newer_date_rendered_datasets": newer.rendered_units,
            "incremental_model_pages_kept": inc.kept_pages,
            "incremental_equals_full_build": (None if args.no_check
                                              else differences(work / "site", work / "site-full") == []),
        }
        if not args.no_baseline:
            record["ratio_full"] = round(record["baseline"]["full_s"] / t_full, 1)
            record["ratio_incremental"] = round(record["baseline"]["full_s"] / t_inc, 1)

        sizes = {str(p.relative_to(work / "site")): p.stat().st_size for p in (work / "site").rglob("*.html")}
        biggest = max(sizes, key=sizes.get)
        record.update({
            "pages": pages, "files": files, "html_bytes_total": sum(sizes.values()),
            "largest_page": biggest, "largest_page_bytes": sizes[biggest],
            "pages_over_1MB": sorted(p for p, s in sizes.items() if s >= 1_000_000),
            "target": "1,000 x 18 (issue 24, the plain build): full build <= 25 s, incremental rebuild after one "
                      "changed model <= 3 s, on this machine, side by side with the baseline",
            "file_create_ms_at_end": file_create_ms(work, "create-probe-end"),
            "load_average_at_start": load_start, "load_average_at_end": [round(x, 1) for x in os.getloadavg()],
            "cpus": os.cpu_count(), "machine": platform.platform(), "python": platform.python_version(),
        })
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(record, indent=1) + "\n")
        print(json.dumps(record, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
