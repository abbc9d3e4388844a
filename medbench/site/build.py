"""``build_site``: registry + results -> a static site (HTML, CSS, JS, CSV, JSON), deterministically.

The build runs in named stages: prepare the output folder, scan the inputs, build the datasets (each
a pure function of its input files: ``dataset_pages.build_dataset``, in worker processes when there
are several), write the pages that do not depend on the datasets, then the home page and the combined
downloads, and remove what the build did not write.

Builds are incremental and give the bytes of a full build. Every input is known by its sha256 (a file
whose size and mtime are unchanged is not hashed again); every output has a key, a digest of what it
shows (the code, templates and library versions included). A dataset whose inputs are unchanged is not
loaded: its summary, its line of results.json and its CSV rows come from the build cache; a page is
written when its key changed or its file was touched. The cache (``CACHE``, in the output folder) is
not part of the site; ``full=True`` ignores it. The output folder is owned by the build: it carries a
marker file, and files the build did not write are removed from it; a non-empty folder without the
marker is never touched.
"""

from __future__ import annotations

import hashlib
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from ..data import DATASETS
from ..errors import MedbenchError
from ..paths import leaderboard_root
from ..protocol import CURRENT_VERSION
from ..zoo import zoo_root
from . import export, lite, meta, protocol_page
from .dataset_pages import DatasetTask, InputFile, build_dataset, digest, read_json, write_json
from .load import Inputs, load_literature
from .render import STATIC, TEMPLATES, Writer, environment, stat_of
from .studies import load_studies, render_studies

MARKER = ".medbench-site"
CACHE = ".medbench-build"
SETTLE_S = 2.0  # a file changed this recently is hashed again (file times are coarser than two writes)
PARALLEL_MIN_WEIGHT = 400  # below this many input files, starting worker processes costs more than it saves


@dataclass
class BuildReport:
    out: Path
    pages: int = 0
    files: int = 0
    problems: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    rendered_units: list[str] = field(default_factory=list)  # datasets loaded and rendered by this build
    kept_pages: int = 0  # model pages kept from the last build (unchanged key and file)


def build_site(out: str | Path = "site", registry: str | Path | None = None, results: str | Path | None = None,
               *, leaderboard_dir: str | Path | None = None, literature: str | Path | None = None,
               jobs: int = 1, full: bool = False) -> BuildReport:
    """Render the site into ``out``; returns what was written and the problems met on the way.

    Defaults: ``registry`` is the zoo (``zoo_root()``); ``leaderboard_dir`` is ``paths.leaderboard_root()``,
    and ``results``, ``literature`` (published numbers shown as "reported" rows; a missing file means none)
    and the studies are read from it. ``jobs`` > 1 builds datasets in that many processes (same
    bytes). ``full`` renders every page, ignoring what an earlier build into ``out`` left.
    """
    lb = Path(leaderboard_dir) if leaderboard_dir else leaderboard_root()
    registry = Path(registry) if registry else zoo_root()
    results = Path(results) if results else lb / "results"
    literature = Path(literature) if literature else lb / "literature.yaml"
    out = Path(out)
    clock = [time.perf_counter()]
    report = BuildReport(out)

    def stage(name: str) -> None:
        now = time.perf_counter()
        report.timings[name] = now - clock[0]
        clock[0] = now

    _prepare_out(out)
    cache = _Cache(out, full)
    from .. import __version__

    common = {"version": __version__, "build_date": None, "protocols": protocol_page.versions(),
              "current_protocol": CURRENT_VERSION}
    context = digest(_code_key(lb), common, meta.repository_url())
    head = Inputs()
    if literature.is_file():
        load_literature(literature, head)
    tasks = _scan(registry, results, lb, out, head, cache, context, common)
    stage("scan")
    built = _build_datasets(tasks, cache, jobs, report)
    stage("datasets")
    w = Writer(out, cache.outputs)
    for done in built.values():
        w.records.update(done["records"])
    env = environment()
    side_problems = _fixed_pages(w, env, lb, common, context, report)
    _home_and_downloads(w, env, built, common, context, report)
    report.problems = (head.problems + _missing(registry, "registry", "no entries")
                       + [p for d in built.values() for p in d["summary"]["problems"][0]]
                       + _missing(results, "results", "no results")
                       + [p for d in built.values() for p in d["summary"]["problems"][1]] + side_problems)
    w.prune(keep={CACHE})
    report.files = len(w.records)
    cache.save(w.records, built)
    stage("finish")
    return report


def _missing(folder: Path, what: str, means: str) -> list[str]:
    return [] if folder.is_dir() else [f"{what} folder {folder} does not exist: {means}"]


def _prepare_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise MedbenchError(f"{out} exists and is not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise MedbenchError(f"{out} is not empty and was not made by 'medbench leaderboard build' (no {MARKER} "
                            "file): refusing to overwrite it; choose an empty or new --out folder")
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text(_MARKER_TEXT)  # first: a build that fails leaves a folder the next build may use


_MARKER_TEXT = "Generated by 'medbench leaderboard build'. Do not edit by hand: rebuild instead.\n"


def _code_key(lb: Path) -> str:
    """A key of everything besides the inputs that decides the bytes of the site: medbench's own source,
    templates and static files, the study results that boards and model pages show, and the versions of
    the libraries that render or parse."""
    package = Path(__file__).resolve().parents[1]
    files = sorted(package.rglob("*.py")) + sorted(p for p in package.glob("protocols/*") if p.is_file())
    files += sorted(p for folder in (TEMPLATES, STATIC) for p in folder.rglob("*") if p.is_file())
    files += sorted((lb / "studies" / "explanation-stability").glob("*.json"))
    h = hashlib.sha256()
    for p in files:
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    for dist in ("jinja2", "markupsafe", "pydantic", "pydantic_core", "numpy", "medmnist", "pyyaml"):
        try:
            h.update(f"{dist}={metadata.version(dist)}\0".encode())
        except metadata.PackageNotFoundError:
            h.update(f"{dist}=none\0".encode())
    return h.hexdigest()


class _Cache:
    """What the last build into ``out`` left in ``<out>/CACHE``: the sha256 of each input file with its
    size and mtime (``inputs``), the key, size and mtime of each output (``outputs``), and each dataset's
    summary, results.json line and CSV rows (``dataset``). A damaged cache costs work, never correctness."""

    def __init__(self, out: Path, full: bool):
        self.folder = out / CACHE
        self.inputs = read_json(self.folder / "inputs.json")
        self.outputs = {} if full else read_json(self.folder / "outputs.json")
        self.full = full

    def sha256(self, path: str) -> str | None:
        """The file's sha256 when the last build hashed it and its size and mtime are unchanged since (a file
        changed within ``SETTLE_S`` of the scan is hashed again, here); None for a new or changed file (the
        process that loads it hashes it)."""
        old = self.inputs.get(path)
        try:
            st = os.stat(path)
        except OSError:
            return None
        if not old or old[:2] != [st.st_size, st.st_mtime_ns]:
            return None
        if time.time() - st.st_mtime_ns / 1e9 > SETTLE_S:
            return old[2]
        try:
            sha = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        except OSError:
            return None
        self.inputs[path] = [st.st_size, st.st_mtime_ns, sha]
        return sha

    def dataset(self, name: str, key: str | None) -> dict | None:
        """The last build's result for dataset ``name`` when it was built from inputs of this ``key`` and
        every file it wrote is as it left it."""
        if key is None or self.full:
            return None
        done = read_json(self.folder / "datasets" / f"{name}.json")
        out = str(self.folder.parent)
        if done.get("key") != key or any(self.outputs.get(rel) != rec or stat_of(os.path.join(out, rel)) != rec[1:]
                                         for rel, rec in done.get("records", {}).items()):
            return None
        return done

    def save(self, outputs: dict, built: dict) -> None:
        for name, done in built.items():
            if done.get("built"):
                write_json(self.folder / "datasets" / f"{name}.json",
                           {k: done[k] for k in ("key", "summary", "line", "csv", "records")})
        for d in built.values():
            for path, rec in d["hashes"].items():
                self.inputs[path] = rec
        write_json(self.folder / "inputs.json", self.inputs)
        write_json(self.folder / "outputs.json", outputs)


# --- stages ----------------------------------------------------------------------------------------

def _scan(registry: Path, results: Path, lb: Path, out: Path, head: Inputs, cache: _Cache, context: str,
          common: dict) -> list[DatasetTask]:
    """One task per dataset and per other folder of the registry or the results, its files known by sha256
    where the last build hashed the same bytes."""
    def listing(root: Path, name: str, suffix: str) -> list[InputFile]:
        folder = os.path.join(root, name)  # (strings: 36,000 files at 1,000 x 18, where pathlib costs a second)
        absolute = os.path.abspath(folder)
        try:
            names = sorted(e.name for e in os.scandir(folder) if e.name.endswith(suffix) and e.is_file())
        except OSError:
            return []
        return [InputFile(os.path.join(folder, n), cache.sha256(os.path.join(absolute, n))) for n in names]

    names = set(DATASETS)
    for root in (registry, results):
        if root.is_dir():
            names |= {e.name for e in os.scandir(root) if e.is_dir()}
    tasks = []
    for name in sorted(names):
        tasks.append(DatasetTask(name, out, listing(registry, name, ".yaml"), listing(results, name, ".json"),
                                 listing(results, name, ".train.jsonl"), listing(lb / "attacks", name, ".json"),
                                 [p for p in head.literature if p.dataset == name], context, common, lb / "studies",
                                 cache.folder))
    return tasks


def _build_datasets(tasks: list[DatasetTask], cache: _Cache, jobs: int, report: BuildReport) -> dict[str, dict]:
    """Each task's result: the last build's where its inputs are unchanged, otherwise built here or, when
    the work is big enough, by ``jobs`` worker processes (the biggest first)."""
    built: dict[str, dict] = {}
    todo = []
    for task in tasks:
        kept = cache.dataset(task.name, task.key())
        if kept is not None:
            built[task.name] = {**kept, "hashes": {}}
            continue
        mine = (f"{task.name}/", f"results/{task.name}/", f"data/{task.name}.")
        task.previous = {rel: rec for rel, rec in cache.outputs.items() if rel.startswith(mine)}
        todo.append(task)
    todo.sort(key=lambda t: (-t.weight, t.name))
    if jobs > 1 and len(todo) > 1 and sum(t.weight for t in todo) >= PARALLEL_MIN_WEIGHT:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = {pool.submit(build_dataset, t): t.name for t in todo}
            for future in as_completed(futures):
                try:
                    built[futures[future]] = future.result()
                except BrokenProcessPool:
                    raise MedbenchError("site build: a worker process died before its datasets were built; the "
                                        "site is unchanged where it was not written: run the build again") from None
                except Exception as exc:
                    pool.shutdown(cancel_futures=True)
                    raise MedbenchError(f"site build: building {futures[future]} failed: {type(exc).__name__}: "
                                        f"{exc}") from exc
    else:
        for task in todo:
            built[task.name] = build_dataset(task)
    for task in todo:
        done = built[task.name]
        done["built"] = True
        if task.name in DATASETS:
            report.rendered_units.append(task.name)
            report.kept_pages += done["summary"]["kept"]
    report.rendered_units.sort()
    return dict(sorted(built.items()))


def _fixed_pages(w: Writer, env, lb: Path, common: dict, context: str, report: BuildReport) -> list[str]:
    """The marker, static files, protocol pages, the lite track's page and the studies: the pages that do
    not depend on the datasets. Returns the problems met."""
    w.write(MARKER, _MARKER_TEXT)
    for asset in sorted(STATIC.iterdir()):
        if asset.is_file():
            w.write(f"static/{asset.name}", asset.read_bytes())
    for v in common["protocols"]:
        files = protocol_page.files(v)
        key = digest(context, v, {name: hashlib.sha256(data).hexdigest() for name, data in files.items()})
        report.pages += 1
        rels = [f"protocol/v{v}.html"] + [f"protocol/{name}" for name in files]
        if all(w.fresh(rel, key) for rel in rels):
            continue
        page = protocol_page.load_page(v)
        w.write(rels[0], env.get_template("protocol.html").render(root="../", page=page, **common), key)
        for name, data in page.files.items():
            w.write(f"protocol/{name}", data, key)
    lite_page = lite.load_lite(lb / "lite")  # the lite track: its own page, never in the benchmark's tables
    w.write("lite.html", env.get_template("lite.html").render(
        root="", lite=lite_page, **{**common, "build_date": meta.data_date(lite_page.dates)}))
    w.write(f"protocol/{lite_page.protocol_file}", protocol_page.raw_file(lite_page.protocol_file))
    report.pages += 1
    problems = list(lite_page.problems)
    report.pages += render_studies(env, w, load_studies(lb / "studies", problems), common)
    return problems


def _home_and_downloads(w: Writer, env, built: dict[str, dict], common: dict, context: str,
                        report: BuildReport) -> None:
    """``index.html`` (every dataset's board in brief) and the combined ``results.json`` and ``results.csv``."""
    summaries = {n: built[n]["summary"] for n in DATASETS}
    date = meta.data_date(s["date"] for s in summaries.values()) or "1970-01-01"
    ex = next(({"model_id": s[k], "dataset": n} for k in ("best", "first") for n, s in summaries.items() if s[k]),
              {"model_id": "Baseline_ResNet18_ERM", "dataset": "breastmnist"})
    w.write("index.html", env.get_template("home.html").render(
        root="", boards=summaries, example=ex, n_models=sum(s["n_rows"] for s in summaries.values()),
        **{**common, "build_date": date}))
    report.pages += 1 + sum(s["pages"] for s in summaries.values())
    key = digest(context, [built[n]["key"] for n in DATASETS])
    if w.fresh("data/results.json", key) and w.fresh("data/results.csv", key):
        return
    w.write("data/results.json", export.join_record_lines([built[n]["line"] for n in DATASETS], common["version"]),
            key)
    w.write("data/results.csv", export.format_csv([built[n]["csv"] for n in DATASETS]), key)
