"""``build_site``: registry + results -> a static site (HTML, CSS, JS, CSV, JSON), deterministically.

The output folder is owned by the build: it carries a marker file, and files the build did not
write are removed from it. A non-empty folder without the marker is never touched.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import time
from datetime import datetime, timezone
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
from markupsafe import Markup, escape

from ..data import DATASETS
from ..errors import MedbenchError
from ..protocol import CURRENT_VERSION
from . import export, marks, meta, plots, protocol_page
from .explanations import load_explanations
from .load import load_inputs
from .studies import load_studies, render_studies
from .table import DatasetBoard, build_boards

MARKER = ".medbench-site"
LEADERBOARD_DIR = Path(__file__).resolve().parents[2] / "leaderboard"


@dataclass
class BuildReport:
    out: Path
    pages: int = 0
    files: int = 0
    problems: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage


def pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None or value != value else f"{value * 100:.{digits}f}"


def num(value: float | None, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def scalar(value) -> str:
    """Registry values for display: floats to 4 significant digits, lists comma-separated."""
    if isinstance(value, (list, tuple)):
        return ", ".join(scalar(v) for v in value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def inline_code(text: str, links: dict[str, str] | None = None) -> Markup:
    """Escaped text with `backticked` spans as <code>; outside code, threats spelled the site's way
    and each exact ``links`` key (e.g. a published file's repository path) made a link to its value."""
    out = []
    for i, part in enumerate(re.split(r"`([^`]+)`", str(text))):
        if i % 2:
            out.append(Markup("<code>{}</code>").format(part))
            continue
        pieces = [escape(marks.threat_label(part))]
        for needle, href in (links or {}).items():
            needle = str(escape(marks.threat_label(needle)))
            pieces = [Markup(str(x).replace(needle, str(Markup('<a href="{}">{}</a>').format(href, Markup(needle)))))
                      for x in pieces]
        out += pieces
    return Markup("").join(out)


def build_date(inputs) -> str:
    """The date the site's data is from: SOURCE_DATE_EPOCH when set (reproducible builds), otherwise
    the latest evaluation record's start date (so an unchanged input always builds the same bytes)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.isdigit():
        return datetime.fromtimestamp(int(epoch), timezone.utc).strftime("%Y-%m-%d")
    dates = [lr.result.provenance.started_at[:10] for lr in inputs.results.values() if lr.result.provenance.started_at]
    return max(dates) if dates else "1970-01-01"


def environment(templates: Path) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True)
    env.filters.update(pct=pct, num=num, scalar=scalar, threat=marks.threat_label, code=inline_code)
    env.globals.update(modality=meta.modality, task_label=meta.TASK_LABEL, datasets=DATASETS,
                       chance_level=marks.chance_level, at_chance=marks.at_chance, headline=marks.headline,
                       top_group=marks.top_group, corruption_errors=marks.corruption_errors,
                       repository=meta.repository_url())
    return env


class _Writer:
    def __init__(self, out: Path):
        self.out, self.written = out, set()

    def text(self, rel: str, content: str) -> None:
        self.bytes(rel, content.encode("utf-8"))

    def bytes(self, rel: str, data: bytes) -> None:
        path = self.out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_bytes() != data:  # untouched files keep their mtime
            path.write_bytes(data)
        self.written.add(path)

    def prune(self) -> None:
        for path in sorted(self.out.rglob("*"), reverse=True):
            if path.is_file() and path not in self.written:
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()


def _prepare_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise MedbenchError(f"{out} exists and is not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise MedbenchError(f"{out} is not empty and was not made by 'medbench leaderboard build' (no {MARKER} "
                            "file): refusing to overwrite it; choose an empty or new --out folder")
    out.mkdir(parents=True, exist_ok=True)


def build_site(out: str | Path = "site", registry: str | Path | None = None, results: str | Path | None = None,
               *, leaderboard_dir: str | Path | None = None, literature: str | Path | None = None,
               jobs: int = 1) -> BuildReport:
    """Render the whole site into ``out``; returns what was written and the problems met on the way.

    ``literature`` is the YAML list of published numbers shown as "reported" rows (default:
    ``leaderboard/literature.yaml``; a missing file means none).

    ``jobs`` > 1 renders model pages in that many forked processes (same bytes, faster on many cores).
    """
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
    inputs = load_inputs(registry, results, literature)
    t_load = time.perf_counter()
    boards = build_boards(inputs)
    t_rank = time.perf_counter()
    env = environment(lb / "templates")
    env.globals["explanations"] = load_explanations(lb / "studies")  # model pages and boards show the study
    w = _Writer(out)
    report = BuildReport(out, problems=list(inputs.problems))
    w.text(MARKER, "Generated by 'medbench leaderboard build'. Do not edit by hand: rebuild instead.\n")
    for asset in sorted((lb / "static").iterdir()):
        if asset.is_file():
            w.bytes(f"static/{asset.name}", asset.read_bytes())

    date = build_date(inputs)
    protocols = protocol_page.versions()
    common = {"version": __version__, "n_models": sum(len(b.rows) for b in boards.values()), "build_date": date,
              "protocols": protocols, "current_protocol": CURRENT_VERSION,
              "citation": meta.citation(__version__, date[:4])}
    best = [b.best for b in boards.values() if b.best] + [r for b in boards.values() for r in b.rows + b.unevaluated]
    example = {"model_id": best[0].model_id, "dataset": best[0].dataset} if best else \
        {"model_id": "Baseline_ResNet18_ERM", "dataset": "breastmnist"}
    w.text("index.html", env.get_template("home.html").render(root="", boards=boards, example=example, **common))
    report.pages += 1
    proto_tpl = env.get_template("protocol.html")
    for v in protocols:
        page = protocol_page.load_page(v)
        w.text(f"protocol/v{v}.html", proto_tpl.render(root="../", page=page, **common))
        for fname, data in page.files.items():
            w.bytes(f"protocol/{fname}", data)
        report.pages += 1
    dataset_tpl, model_tpl = env.get_template("dataset.html"), env.get_template("model.html")
    records: dict[str, dict] = {}
    for name, board in boards.items():
        scatters = {t.key: plots.track_scatters(t) for t in board.tracks}
        w.text(f"{name}/index.html", dataset_tpl.render(root="../", board=board, spec=DATASETS[name],
                                                        scatters=scatters, **common))
        report.pages += 1
        records[name] = export.board_record(board)
        w.text(f"data/{name}.json", export.results_json({name: records[name]}, __version__))
        w.text(f"data/{name}.csv", export.results_csv(boards, only=name))
    pages = [(name, ti, ri) for name, b in boards.items() for ti, t in enumerate(b.tracks) for ri in range(len(t.rows))]
    pages += [(name, -1, ri) for name, b in boards.items() for ri in range(len(b.unevaluated))]
    report.pages += len(pages)
    _render_models(w, model_tpl, boards, pages, common, jobs)
    report.pages += render_studies(env, w, load_studies(lb / "studies", report.problems), common)
    w.text("data/results.json", export.results_json(records, __version__))
    w.text("data/results.csv", export.results_csv(boards))
    w.prune()
    report.files = len(w.written)
    report.timings = {"load": t_load - clock, "rank": t_rank - t_load, "render": time.perf_counter() - t_rank}
    return report


PARALLEL_MIN_PAGES = 400  # below this, forking costs more than it saves
_FORKED: dict = {}  # what forked page workers inherit (never pickled)


def _render_models(w: _Writer, tpl, boards: dict[str, DatasetBoard], pages: list, common: dict, jobs: int) -> None:
    """Model pages (and copies of their result records), in ``jobs`` forked processes when that pays."""
    if jobs <= 1 or len(pages) < PARALLEL_MIN_PAGES or "fork" not in multiprocessing.get_all_start_methods():
        _model_pages(w, tpl, boards, pages, common)
        return
    _FORKED.update(out=w.out, tpl=tpl, boards=boards, common=common)
    chunks = [pages[i::jobs * 4] for i in range(jobs * 4)]
    try:
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            for written in pool.imap_unordered(_model_pages_worker, chunks):
                w.written.update(Path(p) for p in written)
    finally:
        _FORKED.clear()


def _model_pages_worker(chunk: list) -> list[str]:
    w = _Writer(_FORKED["out"])
    _model_pages(w, _FORKED["tpl"], _FORKED["boards"], chunk, _FORKED["common"])
    return [str(p) for p in w.written]


def _model_pages(w: _Writer, tpl, boards: dict[str, DatasetBoard], pages: list, common: dict) -> None:
    for name, ti, ri in pages:
        board = boards[name]
        track = board.tracks[ti] if ti >= 0 else None
        row = track.rows[ri] if track else board.unevaluated[ri]
        figures = plots.model_figures(row.result) if row.result else {}
        log = training_log(row)
        w.text(f"{name}/{row.slug}.html", tpl.render(root="../", board=board, spec=DATASETS[name], row=row,
                                                     track=track, figures=figures,
                                                     train_log=log.name if log else None, **common))
        if row.loaded:
            w.bytes(f"results/{name}/{row.loaded.path.name}", row.loaded.path.read_bytes())
            if log is not None:
                w.bytes(f"results/{name}/{log.name}", log.read_bytes())


def training_log(row) -> Path | None:
    """The training log published with a result (``<id>.train.jsonl`` beside ``<id>.json``), if any."""
    if not row.loaded:
        return None
    log = row.loaded.path.with_name(row.loaded.path.stem + ".train.jsonl")
    return log if log.is_file() else None


