"""``build_site``: registry + results -> a static site (HTML, CSS, JS, CSV, JSON), deterministically.

The output folder is owned by the build: it carries a marker file, and files the build did not
write are removed from it. A non-empty folder without the marker is never touched.

Builds are incremental and give the bytes of a full build. The site is made of units, one per
dataset folder (``units.Unit``); the build state (``state.STATE``, in the output folder but not part
of the site) records each unit's input key, what the rest of the site needs from it, and the key of
each of its pages. A rebuild loads and ranks only the units whose inputs changed, renders within them
only the pages whose key changed, and re-renders the home page and the combined downloads from the
kept summaries. A change of the code, the templates or the build context (version, protocol versions,
repository) renders everything again; ``full=True`` ignores the state. A unit is loaded and rendered in
one go, by this process or by worker processes that each take the next unit when done with the last,
while the scan goes on and this process writes the pages that do not depend on the datasets.
"""

from __future__ import annotations

import gc
import hashlib
import multiprocessing
import os
import queue
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..data import DATASETS
from ..errors import MedbenchError
from ..protocol import CURRENT_VERSION
from ..studies import list_studies
from . import collector, export, lite, meta, protocol_page
from .load import Inputs, load_literature
from .render import Writer, environment, inline_code, num, pct, scalar, shared_environment  # noqa: F401
from .state import Hasher, InputFile, StateFolder, code_key, digest, folder_listing, outputs_intact
from .studies import load_studies, render_studies
from .units import Unit, home_board, kept_record_line

MARKER = ".medbench-site"
LEADERBOARD_DIR = Path(__file__).resolve().parents[2] / "leaderboard"
PARALLEL_MIN_PAGES = 400  # below this many input files, forking costs more than it saves


@dataclass
class BuildReport:
    out: Path
    pages: int = 0
    files: int = 0
    problems: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    rendered_units: list[str] = field(default_factory=list)  # datasets whose part of the site was rendered
    kept_pages: int = 0  # model pages kept from the previous build (unchanged key and file)
    rank_updated_pages: int = 0  # model pages of the previous build whose rank alone changed, updated in place


def build_date(dates) -> str:
    """The date the site's data is from (the home page's "data as of" and citation): ``meta.data_date``, or
    1970-01-01 when no record has a date."""
    return meta.data_date(dates) or "1970-01-01"


def _prepare_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise MedbenchError(f"{out} exists and is not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise MedbenchError(f"{out} is not empty and was not made by 'medbench leaderboard build' (no {MARKER} "
                            "file): refusing to overwrite it; choose an empty or new --out folder")
    out.mkdir(parents=True, exist_ok=True)


def _scan_order(registry: Path, results: Path) -> list[str]:
    """Every dataset and every other folder of the registry or the results, the most recently changed first.

    A re-evaluation, a new file or a checkout replaces files in its folder, which changes the folder's time:
    scanning that folder first lets its (slow) loading start while the others are scanned. The order
    changes only when work starts, never what is built."""
    times: dict[str, int] = dict.fromkeys(DATASETS, 0)
    for root in (registry, results):
        try:
            with os.scandir(root) as entries:
                for e in entries:
                    if e.is_dir():
                        times[e.name] = max(times.get(e.name, 0), e.stat().st_mtime_ns)
        except OSError:
            continue
    return sorted(times, key=lambda n: (-times[n], n))


def _scan_unit(name: str, registry: Path, results: Path, hasher: Hasher, literature: list, previous: dict) -> Unit:
    """The unit of folder ``name``: its registry entries, results and training logs, with their sha256 where
    the last build hashed the same bytes (stat unchanged; ``previous``: the last build's records of the folder's
    files, by absolute path)."""
    unit = Unit(name)
    (entries,) = folder_listing(registry, name, (".yaml",), (False,))
    records, logs = folder_listing(results, name, (".json", ".train.jsonl"), (False, True))

    def hashed(files: list) -> list[InputFile]:
        # a folder none of whose files the last build hashed (a first build, a new dataset) is hashed by the
        # process that loads it, from the bytes it parses (sha256 None until then: ``Unit.load``), so each
        # file is read once, and in parallel
        if not any(folder + os.sep + n in previous for _, folder, n in files):
            return [InputFile(given, n, None) for given, _, n in files]
        return hasher.files(files, previous)

    unit.registry = hashed(entries)
    both = hashed(records + logs)  # (one folder: known when any of its files is)
    unit.results = both[:len(records)]
    unit.logs = {f.name: f for f in both[len(records):]}
    unit.literature = [p for p in literature if p.dataset == name]
    # the work grows with the bytes of results to parse (one sampled: a dataset's results are of one size) and
    # the pages to write; the biggest units go first, so that the last ones, which decide the end, are small
    try:
        sample = os.stat(os.path.join(records[0][1], records[0][2])).st_size if records else 0
    except OSError:
        sample = 0
    unit.cost = len(records) * sample + 10_000 * len(entries)
    return unit


def build_site(out: str | Path = "site", registry: str | Path | None = None, results: str | Path | None = None,
               *, leaderboard_dir: str | Path | None = None, literature: str | Path | None = None,
               jobs: int = 1, full: bool = False) -> BuildReport:
    """Render the site into ``out``; returns what was written and the problems met on the way.

    ``literature`` is the YAML list of published numbers shown as "reported" rows (default:
    ``leaderboard/literature.yaml``; a missing file means none).

    ``jobs`` > 1 loads and renders datasets in that many forked processes (same bytes, faster on many
    cores). ``full`` renders every page, ignoring what an earlier build into ``out`` left.
    """
    with collector.build():
        return _build(out, registry, results, leaderboard_dir, literature, jobs, full)


def _build(out, registry, results, leaderboard_dir, literature, jobs: int, full: bool) -> BuildReport:
    from .. import __version__

    lb = Path(leaderboard_dir) if leaderboard_dir else LEADERBOARD_DIR
    root = lb.parent
    registry = Path(registry) if registry else root / "model_zoo"
    results = Path(results) if results else lb / "results"
    literature = Path(literature) if literature else lb / "literature.yaml"
    if not (lb / "templates").is_dir():
        raise MedbenchError(f"templates not found in {lb / 'templates'}: run the build from a medbench source checkout")
    out = Path(out)
    _prepare_out(out)
    clock = time.perf_counter()
    # the state and the scan make ~100,000 small containers that live for the whole build: the cyclic
    # collector, re-scanning them at every threshold, took 80% of this stage (``collector``)
    with collector.parsing():
        store = StateFolder(out)
        previous, saved = ({}, {}) if full else store.read()
        store.forget()
        code = code_key(lb)
        old_units = saved
        if previous.get("code") != code:
            previous, old_units = {}, {}  # only the input hashes stay valid (``saved``)
        report = BuildReport(out)
        # what every page shows besides its own data; a page's "data as of" date is that of the records it shows
        # (a dataset's page: its own latest record; the home page: the latest of all; a model page shows its
        # record's date in the page itself), so a new record re-renders its dataset's pages, not the whole site,
        # and a unit can be rendered as soon as it is loaded
        common = {"version": __version__, "build_date": None, "protocols": protocol_page.versions(),
                  "current_protocol": CURRENT_VERSION}
        context = digest(code, common, meta.repository_url())
        same_context = previous.get("context") == context  # else every page shows something new: render all

        def task_previous(unit: Unit) -> dict | None:
            """What rendering the unit may keep from the last build (None: a stray folder, loaded for its problems)."""
            if not unit.is_dataset:
                return None
            old = old_units.get(unit.name)
            return {"outputs": old["outputs"], "read_keys": same_context} if old else {}

        # inputs: literature (always parsed: one small file), then every input file's sha256
        head = Inputs()
        if literature.is_file():
            load_literature(literature, head)
        hasher = Hasher(threads=jobs)
        missing: dict[str, list[str]] = {"registry": [], "results": []}
        if not registry.is_dir():
            missing["registry"].append(f"registry folder {registry} does not exist: no entries")
        if not results.is_dir():
            missing["results"].append(f"results folder {results} does not exist: no results")
        units: dict[str, Unit] = {}
        stale: list[Unit] = []  # units to load (and render, for datasets)
        waiting: list[Unit] = []  # of those, the ones not handed to a runner yet
        here = _Here(out, lb / "templates", common, context, reuse=not full)
        runner = None
        for name in _scan_order(registry, results):
            unit = units[name] = _scan_unit(name, registry, results, hasher, head.literature,
                                            (saved.get(name) or {}).get("inputs", {}))
            unit.rebuilt = name in saved
            unit.seal(code)
            if _intact(out, unit, old_units.get(name)) and (same_context or not unit.is_dataset):
                continue
            stale.append(unit)
            waiting.append(unit)
            if runner is None and _parallel(jobs, unit.weight):
                runner = _Forked(here, jobs)  # the first big units load and render while the scan goes on
            if runner is not None and runner.idle():
                waiting.pop()  # (this unit: handed over now)
                runner.submit(unit, task_previous(unit))
        units = dict(sorted(units.items()))
    t_scan = time.perf_counter()

    if runner is None:
        runner = _Forked(here, jobs) if _parallel(jobs, sum(u.weight for u in stale)) else here
    for unit in sorted(waiting, key=lambda u: (-u.cost, u.name)):  # (the biggest first)
        runner.submit(unit, task_previous(unit))
    rendering = sorted(u.name for u in stale if u.is_dataset)
    w = Writer(out)
    env = shared_environment(lb / "templates")
    old_shared = previous.get("shared", {})
    side_problems: list[str] = []  # of the lite track and the studies (reported after the datasets')
    summaries = {name: old_units[name]["summary"] for name in units if name in old_units}
    rendered: dict[str, tuple[dict, str]] = {}

    def collect() -> None:
        for name, done in runner.results():
            summaries[name] = done["summary"]
            units[name].key = done["key"]  # (set here for units whose files were hashed by the loading process)
            hasher.seen.update(done["records"])
            if done["render"] is not None:
                rendered[name] = done["render"]

    try:
        # while the units load and render: the pages that do not depend on the datasets, and the kept datasets'
        # parts of the combined downloads
        with collector.parsing():
            shared_keys = _fixed_pages(w, lb, env=env, common=common, report=report, previous=old_shared,
                                       context=context, problems=side_problems)
            studies = _study_pages(w, env, lb / "studies", common, context, old_shared.get("studies", {}), report,
                                   side_problems)
            kept_lines = _read_kept(lambda n: kept_record_line(out, n, __version__), rendering, old_units)
            kept_chunks = _read_kept(store.chunk, rendering, old_units)
            listing = w.listing()  # (what is there now: ``prune`` removes what this build did not write)
        collect()
        # results.csv has one robust column per threat of any dataset: the rows kept from the last build
        # were written for its columns, and a dataset whose rows need other columns is rendered again
        union = sorted({t for n in DATASETS for t in (rendered[n][0] if n in rendered else old_units[n])
                        ["summary"]["csv_threats"]})
        again = [n for n in DATASETS if n not in rendered and old_units[n]["summary"]["n_rows"]
                 and previous.get("union") != union]  # (a dataset without rows has no text)
        for n in again:
            runner.submit(units[n], {"outputs": old_units[n]["outputs"], "read_keys": True})
        collect()
        t_units = time.perf_counter()

        # the rest of the site, from every unit's summary (kept or new); the state of changed units
        chunks: dict[str, str] = {}
        new_units = {}
        by_folder: dict[str, dict] = {}
        for key, rec in hasher.seen.items():  # (keys are absolute paths: <root>/<folder>/<file>)
            by_folder.setdefault(key.rsplit(os.sep, 2)[-2], {})[key] = rec
        for name, unit in units.items():
            inputs = by_folder.get(name, {})
            if name in rendered:
                state, line = rendered[name]
                part = state.pop("csv_part")
                keys = state.pop("keys")
                report.kept_pages += state.pop("kept")
                report.rank_updated_pages += state.pop("moved")
                chunks[name] = export.csv_rows(union, part)
                state["inputs"] = inputs
                store.write_unit(name, state, keys, chunks[name])
                new_units[name] = state
            elif unit in stale:  # a folder that is not a dataset: loaded for its problems, never rendered
                new_units[name] = {"key": unit.key, "summary": summaries[name], "outputs": {}, "inputs": inputs}
                store.write_unit(name, new_units[name])
            else:
                new_units[name] = old_units[name]
                if old_units[name].get("inputs") != inputs:  # touched, same bytes: remember the new times
                    new_units[name]["inputs"] = inputs
                    store.write_unit(name, new_units[name])
    except BaseException:
        runner.close(stop=True)  # (the workers' remaining work is dropped)
        raise
    runner.close()  # the workers exit while the rest of the site is written
    with collector.parsing():  # (as for the scan: the state's many small containers)
        summaries = {n: s["summary"] for n, s in new_units.items()}
        report.problems = (head.problems + missing["registry"]
                           + [p for s in summaries.values() for p in s["problems"][0]]
                           + missing["results"] + [p for s in summaries.values() for p in s["problems"][1]])
        report.problems += side_problems
        date = build_date(s["date"] for s in summaries.values())
        _home_page(w, env, summaries, {**common, "build_date": date, "citation": meta.citation(__version__, date[:4])},
                   report)
        combined = ["data/results.json", "data/results.csv"]
        kept = {r: old_shared.get("outputs", {}).get(r) for r in combined}
        if not rendered and same_context and outputs_intact(out, kept):
            for rel in combined:  # no dataset changed: the combined downloads are those of the last build
                w.keep(rel, old_shared["outputs"][rel])
        else:
            lines = [rendered[n][1].encode() if n in rendered else kept_lines.get(n) or
                     kept_record_line(out, n, __version__) for n in DATASETS]
            w.bytes("data/results.json", export.join_record_line_bytes(lines, __version__))
            w.text("data/results.csv", export.csv_header(union) + "".join(
                chunks[n] if n in chunks else kept_chunks.get(n) or _chunk(store, n) for n in DATASETS))
        report.pages += sum(summaries[n]["pages"] for n in DATASETS)
        report.rendered_units = sorted(rendered)
        for state in new_units.values():
            w.outputs.update(state["outputs"])
        w.prune(listing)
        report.files = len(w.outputs)
        of_units = {rel for s in new_units.values() for rel in s["outputs"]}
        shared = {rel: rec for rel, rec in w.outputs.items() if rel not in of_units}
        store.write({"code": code, "context": context, "union": union, "units": list(new_units),
                     "shared": {"outputs": shared, "keys": shared_keys, "studies": studies}})
    runner.join()
    report.timings = {"scan": t_scan - clock, "units": t_units - t_scan, "finish": time.perf_counter() - t_units}
    return report


def _study_pages(w: Writer, env, root: Path, common: dict, context: str, previous: dict, report: BuildReport,
                 problems: list[str]) -> dict:
    """The study pages (``render_studies``), kept as the last build wrote them when the study results and
    the build context are unchanged; returns their state (key, outputs, problems, page count)."""
    files = sorted(root.glob("*/*.json")) if root.is_dir() else []
    key = digest(context, list_studies(), [[p.parent.name, p.name, hashlib.sha256(p.read_bytes()).hexdigest()]
                                           for p in files])
    if previous.get("key") == key and outputs_intact(w.out, previous.get("outputs", {})):
        for rel, rec in previous["outputs"].items():
            w.keep(rel, rec)
        problems += previous["problems"]
        report.pages += previous["pages"]
        return previous
    found: list[str] = []
    before = set(w.outputs)
    pages = render_studies(env, w, load_studies(root, found), common)
    problems += found
    report.pages += pages
    return {"key": key, "outputs": {rel: rec for rel, rec in w.outputs.items() if rel not in before},
            "problems": found, "pages": pages}


def _read_kept(read, rendering: list[str], old_units: dict) -> dict:
    """``read(name)`` of each dataset kept from the last build (read ahead, while the workers render: one that
    cannot be read here is read again where it is needed, and reported there)."""
    out = {}
    for n in DATASETS:
        if n not in rendering and n in old_units:
            try:
                out[n] = read(n)
            except (OSError, ValueError):
                pass
    return out


def _chunk(store: StateFolder, name: str) -> str:
    text = store.chunk(name)
    if text is None:
        raise MedbenchError(f"site build state: the rows of {name} are missing; rebuild with --full")
    return text


def _intact(out: Path, unit: Unit, old: dict | None) -> bool:
    """Whether the unit's part of the site from the last build is current: same inputs, files untouched."""
    return bool(old) and old.get("key") == unit.key and outputs_intact(out, old.get("outputs", {}))


def _home_page(w: Writer, env, summaries: dict, common: dict, report: BuildReport) -> None:
    """``index.html``: every dataset's board in brief (from the units' summaries)."""
    ds = list(DATASETS)
    example = next(({"model_id": summaries[n]["best"], "dataset": n} for n in ds if summaries[n]["best"]), None) or \
        next(({"model_id": summaries[n]["first"], "dataset": n} for n in ds if summaries[n]["first"]), None) or \
        {"model_id": "Baseline_ResNet18_ERM", "dataset": "breastmnist"}
    boards = {n: home_board(summaries[n]) for n in ds}
    w.text("index.html", env.get_template("home.html").render(
        root="", boards=boards, example=example, n_models=sum(b.n_rows for b in boards.values()), **common))
    report.pages += 1


def _fixed_pages(w: Writer, lb: Path, *, env, common: dict, report: BuildReport, previous: dict, context: str,
                 problems: list[str]) -> dict[str, str]:
    """The marker, static files, protocol pages (kept when their key is unchanged) and the lite track's page:
    the pages that do not depend on the datasets. Returns the protocol pages' keys."""
    keys = {}
    w.text(MARKER, "Generated by 'medbench leaderboard build'. Do not edit by hand: rebuild instead.\n")
    for asset in sorted((lb / "static").iterdir()):
        if asset.is_file():
            w.bytes(f"static/{asset.name}", asset.read_bytes())
    proto_tpl = env.get_template("protocol.html")
    old_keys, old_out = previous.get("keys", {}), previous.get("outputs", {})
    for v in common["protocols"]:
        files = protocol_page.files(v)
        rels = [f"protocol/v{v}.html"] + [f"protocol/{name}" for name in files]
        key = digest(context, v, {name: data.hex() for name, data in files.items()})
        keys[rels[0]] = key
        report.pages += 1
        if old_keys.get(rels[0]) == key and outputs_intact(w.out, {r: old_out.get(r) for r in rels}):
            for r in rels:
                w.keep(r, old_out[r])
            continue
        page = protocol_page.load_page(v)
        w.text(rels[0], proto_tpl.render(root="../", page=page, **common))
        for fname, data in page.files.items():
            w.bytes(f"protocol/{fname}", data)
    lite_page = lite.load_lite(lb / "lite")  # the lite track: its own page, never in the benchmark's tables
    problems += lite_page.problems
    w.text("lite.html", env.get_template("lite.html").render(root="", lite=lite_page,
                                                             **{**common, "build_date": meta.data_date(lite_page.dates)}))
    w.bytes(f"protocol/{lite_page.protocol_file}", protocol_page.raw_file(lite_page.protocol_file))
    report.pages += 1
    return keys


# --- running units: here, or in forked processes ----------------------------------------------------

class _Here:
    """Loads and renders units in this process, one at a time (``submit``, then ``results``)."""

    def __init__(self, out: Path, templates: Path, common: dict, context: str, reuse: bool = True):
        self.out, self.templates, self.common, self.context = out, templates, common, context
        self.reuse = reuse  # registry files parsed by the last build are not parsed again (not with ``full``)
        self.queue: list[tuple[Unit, dict | None]] = []
        self.env = None

    def submit(self, unit: Unit, previous: dict | None) -> None:
        """Load ``unit`` and, unless ``previous`` is None, render it (``previous``: what it may keep from the
        last build: its ``outputs``, and whether its page keys are to be read from the state)."""
        self.queue.append((unit, previous))

    def results(self):
        """(unit name, what ``run`` gave) of every unit submitted, as each is done."""
        while self.queue:
            unit, previous = self.queue.pop(0)
            yield unit.name, self.run(unit, previous)

    def run(self, unit: Unit, previous: dict | None) -> dict:
        """Load (parse and rank) the unit, render it unless ``previous`` is None, and free what was parsed.

        Returns its summary, input key, the state records of the files hashed while loading, and what
        ``Unit.render`` gave with the unit's line of results.json (None when not rendered)."""
        store = StateFolder(self.out)
        with collector.parsing():
            known = store.parsed(unit.name, unit.code) if self.reuse else {}
            summary = dict(unit.load(known))
            # the parsed entries are kept for the next rebuild of a unit that is being rebuilt (not by a first
            # build, which would spend more on writing them than a rebuild of one unit saves by reading them)
            if unit.parsed.keys() != known.keys() and (known or unit.rebuilt):
                store.write_parsed(unit.name, unit.code, unit.parsed)
        done = {"summary": summary, "key": unit.key, "records": unit.hashed, "render": None}
        if previous is not None:
            if self.env is None:
                self.env = shared_environment(self.templates)
            old = {"outputs": previous.get("outputs", {}),
                   "keys": store.keys(unit.name) if previous.get("read_keys") else {}}
            state = unit.render(self.env, self.out, self.common, self.context, old)
            done["render"] = (state, unit.record_line)
            done["summary"] = dict(unit.summary)
        unit.board = None  # free the parsed results
        return done

    def close(self) -> None:
        pass

    def join(self) -> None:
        pass


class _Forked:
    """Loads and renders units in ``jobs`` forked processes. Each takes the next unit from a shared queue
    when it is done with the last (the biggest are queued first): no process waits while another has work,
    and each holds one unit's results at a time."""

    def __init__(self, here: _Here, jobs: int):
        ctx = multiprocessing.get_context("fork")
        # (queues with a feeder thread: neither a submitting parent nor a replying worker waits for the other)
        self.tasks, self.done = ctx.Queue(), ctx.Queue()
        self.tasks.cancel_join_thread()  # (after an error, units never taken are dropped, not waited for)
        self.jobs, self.pending = jobs, 0
        # forked before either queue starts its thread
        self.procs = [ctx.Process(target=_serve, args=(here, self.tasks, self.done), daemon=True)
                      for _ in range(jobs)]
        for proc in self.procs:
            proc.start()

    def idle(self) -> bool:
        """Whether a process may be waiting for work (fewer units submitted and not yet returned than processes)."""
        return self.pending < self.jobs

    def submit(self, unit: Unit, previous: dict | None) -> None:
        self.tasks.put((unit, previous))
        self.pending += 1

    def results(self):
        while self.pending:
            try:
                name, ok, value = self.done.get(timeout=1.0)
            except queue.Empty:  # a process that died with units to do is an error, not a hang
                dead = [p for p in self.procs if p.exitcode is not None]
                if dead:
                    self.close(stop=True)
                    raise MedbenchError(f"site build: a worker process exited (code {dead[0].exitcode}) before "
                                        "its datasets were built; the site is unchanged where it was not "
                                        "written: run the build again") from None
                continue
            self.pending -= 1
            if not ok:
                self.close(stop=True)
                raise MedbenchError(f"site build: a worker process failed on {name}: {value}")
            yield name, value

    def close(self, stop: bool = False) -> None:
        """Tell the workers to stop (``stop``: at once, dropping their work); they exit (unmapping their heaps
        takes a while) while the build goes on, and ``join`` waits for them later."""
        for proc in self.procs:
            if stop:
                proc.kill()
            else:
                self.tasks.put(None)
        if stop:
            self.join()

    def join(self) -> None:
        for proc in self.procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
        self.procs = []
        for q in (self.tasks, self.done):
            q.close()


def _serve(here: _Here, tasks, done) -> None:
    """A forked worker: builds the units it takes from ``tasks`` until it takes None."""
    gc.enable()  # (it may be forked while the scan keeps the collector paused: it renders with it on)
    while True:
        task = tasks.get()
        if task is None:
            return
        unit, previous = task
        try:
            done.put((unit.name, True, here.run(unit, previous)))
        except Exception as exc:  # reported by the parent as a build error
            done.put((unit.name, False, f"{type(exc).__name__}: {exc}"))


def _parallel(jobs: int, weight: int) -> bool:
    """Whether loading and rendering units of this total weight is worth forking ``jobs`` processes."""
    return jobs > 1 and weight >= PARALLEL_MIN_PAGES and "fork" in multiprocessing.get_all_start_methods()
