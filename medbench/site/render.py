"""Rendering: the Jinja environment of the package's templates, its filters, and the output writer."""

from __future__ import annotations

import functools
import os
import re
import shutil
from pathlib import Path

import jinja2
from markupsafe import Markup, escape

from ..data import DATASETS
from .. import svg
from . import marks, meta

TEMPLATES = Path(__file__).resolve().parent / "templates"  # package data, like ``static/``
STATIC = Path(__file__).resolve().parent / "static"


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


def reported_numbers(rep) -> str:
    """The numbers a model's authors (or a paper) report, in brief: "BA 85.0 · AUC 90.1"."""
    return " · ".join(f"{label} {pct(v)}" for label, v in (
        ("BA", rep.clean_balanced_accuracy), ("AUC", rep.clean_auc), ("acc", rep.clean_accuracy),
        ("robust acc", getattr(rep, "robust_accuracy", None)),
        ("robust BA", getattr(rep, "robust_balanced_accuracy", None))) if v is not None)


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


@functools.lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The site's Jinja environment, made once per process: compiling the templates takes longer than
    rendering a hundred pages (Jinja reloads a template whose file changed)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True)
    env.filters.update(pct=pct, num=num, scalar=scalar, threat=marks.threat_label, code=inline_code)
    env.globals.update(modality=lambda name: DATASETS[name].modality, task_label=meta.TASK_LABEL, datasets=DATASETS,
                       chance_level=marks.chance_level, chance_status=marks.chance_status, headline=marks.headline,
                       corruption_errors=marks.corruption_errors, reported_numbers=reported_numbers,
                       repository=meta.repository_url(), labelled_points=svg.LABELLED_POINTS)
    return env


def stat_of(path: str | Path) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


class Writer:
    """Writes the site's files into ``out`` and records each one's key, size and mtime (``records``), so
    that the next build can keep a file whose key is unchanged and which nobody touched since.

    Files are replaced, never written into: a record published as a hard link to its input can never be
    changed through the site."""

    def __init__(self, out: Path, previous: dict[str, list] | None = None):
        self.out = Path(out)
        self.previous = previous or {}
        self.records: dict[str, list] = {}  # site path ("/"-separated) -> [key, size, mtime_ns]

    def fresh(self, rel: str, key: str) -> bool:
        """Whether the last build wrote ``rel`` with ``key`` and the file is as it left it (then it is kept)."""
        old = self.previous.get(rel)
        if old is not None and old[0] == key and stat_of(self.out / rel) == old[1:]:
            self.records[rel] = old
            return True
        return False

    def _replace(self, rel: str, put) -> None:
        path = self.out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.unlink(missing_ok=True)
        put(tmp)
        os.replace(tmp, path)

    def write(self, rel: str, data: str | bytes, key: str = "") -> None:
        """Write ``data`` to ``rel``; a file that holds these bytes already is left as it is (mtime too)."""
        data = data.encode("utf-8") if isinstance(data, str) else data
        path = self.out / rel
        old = stat_of(path)
        if old is None or old[0] != len(data) or path.is_symlink() or path.stat().st_nlink > 1 \
                or path.read_bytes() != data:
            self._replace(rel, lambda tmp: tmp.write_bytes(data))
        self.records[rel] = [key, *stat_of(path)]

    def publish(self, rel: str, src: Path, key: str) -> None:
        """A copy of the input file ``src``: a hard link where the file system allows (18,000 records cost no
        bytes), a copy elsewhere."""
        def put(tmp: Path) -> None:
            try:
                os.link(src, tmp)
            except OSError:
                shutil.copyfile(src, tmp)
        self._replace(rel, put)
        self.records[rel] = [key, *stat_of(self.out / rel)]

    def prune(self, keep: set[str]) -> None:
        """Remove every file of the output that this build did not write or keep (paths in ``keep`` aside),
        then the folders left empty."""
        for root, dirs, files in os.walk(self.out, topdown=False):
            prefix = os.path.relpath(root, self.out).replace(os.sep, "/")
            prefix = "" if prefix == "." else prefix + "/"
            if any(prefix.startswith(k + "/") for k in keep):
                continue
            for name in files:
                if prefix + name not in self.records and prefix + name not in keep:
                    os.unlink(os.path.join(root, name))
            if prefix and not os.listdir(root):
                os.rmdir(root)
