"""Rendering: the Jinja filters and environment (compiled once per process) and the output writer."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import jinja2
import jinja2.compiler
from markupsafe import Markup, escape

from ..data import DATASETS
from ..errors import MedbenchError
from . import marks, meta, svg
from .escaping import html_text
from .state import STATE, stat_of


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


# The snippets below are in every row of a board table and on every model page: Python functions are
# several times faster than Jinja macros or loops there, and give the same escaped text. Text is escaped
# with ``html_text``; numbers formatted by ``pct``/``num`` and schema ints hold no character to escape.
_AT_CHANCE = (' <span class="flag at-chance" title="the 95% interval reaches chance ({}%): not better than '
              'guessing">at chance</span>')


def chance_mark(value, low, high, chance) -> Markup:
    """" at chance" mark of a number whose 95% interval reaches ``chance`` (nothing otherwise)."""
    return Markup(_AT_CHANCE.format(pct(chance))) if marks.at_chance(value, low, high, chance) else Markup()


def ci(value, low, high, chance=None) -> Markup:
    """A percentage with its 95% interval in small print (and the chance mark when ``chance`` is given)."""
    if value is None:
        return Markup('<span class="na">–</span>')
    text = pct(value)
    if low is not None:
        text += f"<small> {pct(low)}–{pct(high)}</small>"
    if chance is not None:
        text += str(chance_mark(value, low, high, chance))
    return Markup(text)


def rank_badge(rank: int) -> str:
    """The start of a ranked model's rank badge: the only place a model page shows its rank (incremental
    builds update a page whose rank alone changed by replacing this text: ``units._rank_moved``)."""
    return f'<span class="badge rank">rank {int(rank)} on '


def flag_badges(row) -> Markup:
    """The row's flags as labelled badges, each explained by its tooltip."""
    h = html_text
    return Markup("".join(f'<span class="flag {h(f.code)}" title="{h(marks.threat_label(f.detail))}">{h(f.label)}</span>'
                          for f in row.flags))


def reported(rep) -> Markup:
    """The numbers a model's authors (or a paper) report, in brief, with their source as the tooltip."""
    if not rep:
        return Markup()
    parts = [f"{label} {pct(v)}" for label, v in (
        ("BA", rep.clean_balanced_accuracy), ("AUC", rep.clean_auc), ("acc", rep.clean_accuracy),
        ("robust acc", getattr(rep, "robust_accuracy", None)),
        ("robust BA", getattr(rep, "robust_balanced_accuracy", None))) if v is not None]
    return Markup(f'<span title="reported in {html_text(rep.source)}; not verified by medbench">'
                  f'{html_text(" · ".join(parts))} (%)</span>')


def delta(verified, reported) -> Markup:
    """A verified number minus a reported one, in percentage points (``–`` when either is missing)."""
    if verified is None or reported is None:
        return Markup('<span class="na">–</span>')
    d = (verified - reported) * 100
    return Markup(f'<span class="{"up" if d >= 0 else "down"}">{d:+.1f}</span>')


def board_rows(track, show: dict, has_rep, chance: float, explanations) -> Markup:
    """The rows of a board's table, one per model of ``track`` (each ending with a newline), with the optional
    columns that ``show`` (and ``has_rep``) turn on; 1,000 rows are ~2x quicker written here than by a loop
    of the template."""
    h = html_text
    out = []
    for r in track.rows:
        cls = ' class="unranked"' if not r.ranked else ' class="g1"' if r.group % 2 else ""
        cells = [f'<tr data-a="{h(r.architecture)}" data-m="{h(r.method)}" data-x="{h(r.extra_data)}"{cls}>\n'
                 f'<td>{h(r.rank if r.ranked else "–")}</td>\n'
                 f'<th scope="row" class="model"><a href="{h(r.slug)}.html">{h(r.model_id)}</a></th>\n'
                 f'<td>{ci(r.clean_ba, *r.clean_ci, chance=chance)}</td>\n']
        if show["auc"]:
            cells.append(f"<td>{h(pct(r.clean_auc))}</td>")
        if show["corr"]:
            cells.append(f"<td>{h(pct(r.corruption_ba))}</td>")
        for t in track.threats:
            cells.append(f"<td>{ci(*r.robust(t), chance=chance)}</td>")
        if show["expl"]:
            xs = explanations.of(r, track.size)
            if xs and xs.headline:
                hl = xs.headline
                cells.append(f"<td>{h('%.2f' % hl.spearman)}<small> {h('%.2f' % hl.spearman_ci.low)}–"
                             f"{h('%.2f' % hl.spearman_ci.high)}</small></td>")
            else:
                cells.append('<td><span class="na">–</span></td>')
        if show["flags"]:
            cells.append(f'<td class="t">{flag_badges(r)}</td>')
        if show["arch"]:
            cells.append(f'<td class="t">{h(r.architecture)}</td>')
        if show["recipe"]:
            cells.append(f'<td class="t">{h(marks.threat_label(r.recipe))}</td>')
        if show["extra"]:
            cells.append(f'<td class="t">{h(r.extra_data)}</td>')
        if show["venue"]:
            cells.append(f'<td class="t">{h(r.venue)}</td>')
        if has_rep:
            cells.append(f'<td class="t rep">{reported(r.entry.reported if r.entry else None)}</td>')
        cells.append("</tr>\n")
        out.append("".join(cells))
    return Markup("".join(out))


def check_rows(checks) -> Markup:
    """The rows of a model page's checks table (one per admission or sanity check)."""
    h = html_text
    return Markup("".join(
        f'<tr class="{"pass" if c.passed else "fail"}"><th scope="row">{h(c.name)}</th><td>{h(c.kind)}</td>'
        f'<td>{"passed" if c.passed else "FAILED"}</td><td class="n">{num(c.value)}</td>'
        f'<td class="n">{num(c.threshold)}</td><td>{h(marks.threat_label(c.message))}</td></tr>\n' for c in checks))


def adversarial_rows(adversarial: list, chance: float) -> Markup:
    """The rows of a model page's adversarial table: (threat label, ``AdversarialResult``) pairs."""
    h = html_text
    out = []
    for t, a in adversarial:
        c, cfg = a.robust_balanced_accuracy_ci, a.config
        low, high = (c.low, c.high) if c else (None, None)
        restarts = f'{cfg.n_restarts} restart{"s" if cfg.n_restarts != 1 else ""}'
        queries = f", {cfg.n_queries} queries" if cfg.n_queries else ""
        out.append(
            f'<tr><th scope="row">{h(marks.threat_label(t))}</th>'
            f'<td class="n">{ci(a.robust_balanced_accuracy, low, high, chance=chance)}</td>'
            f'<td class="n">{pct(a.robust_accuracy)}</td><td class="n">{pct(a.auc_under_attack)}</td>'
            f'<td class="n">{pct(a.clean_balanced_accuracy)}</td><td class="n">{int(a.subset.n)}</td>'
            f'<td>{h(", ".join(cfg.attacks))}; {int(cfg.n_iter)} iterations, {restarts}{queries}; {h(cfg.library)} '
            f'{h(cfg.library_version)}, seed {int(cfg.seed)}</td></tr>\n')
    return Markup("".join(out))


def error_rows(err: dict) -> Markup:
    """The rows of a model page's BE / rBE table (``marks.corruption_errors``), by corruption name."""
    def f3(x):
        return "–" if x is None else f"{x:.3f}"
    names = sorted(err["per_corruption"], key=str.lower)  # the order of Jinja's dictsort
    h = html_text
    return Markup("".join(
        f'<tr><th scope="row">{h(name)}</th><td class="n">{f3(be)}</td><td class="n">{f3(rbe)}</td>'
        f'<td>{h(err["undefined"].get(name, ""))}</td></tr>'
        for name, (be, rbe) in ((n, err["per_corruption"][n]) for n in names)))


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    """Jinja's cache of compiled templates in ``<medbench cache>/jinja`` (a folder only this user may write
    to, checked as Jinja checks its own default folder), or None where there is no such folder.

    Compiling the templates took ~0.2 s of every build, a tenth of an incremental one. Jinja keys each
    entry by the template's name and checks its source's checksum, so an edited template is compiled
    again; the code key (``state.code_key``) covers the templates too."""
    from ..paths import cache_root

    folder = cache_root() / "jinja"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.lstat(folder)
        if info.st_uid != os.getuid() or not stat.S_ISDIR(info.st_mode) or stat.S_IMODE(info.st_mode) != 0o700 \
                or not os.access(folder, os.W_OK):
            return None
    except (OSError, AttributeError):  # (no getuid: not a POSIX system)
        return None
    return jinja2.FileSystemBytecodeCache(str(folder), "medbench-2-%s.cache")  # (2: ``_CodeGenerator``)


class _CodeGenerator(jinja2.compiler.CodeGenerator):
    """Jinja's code generator, writing output expressions with ``html_text`` instead of ``escape`` (their
    pieces are only joined into the page: the same text, a tenth of the site build's time less)."""

    def _output_child_pre(self, node, frame, finalize) -> None:
        if frame.eval_ctx.autoescape and not frame.eval_ctx.volatile:
            self.write("environment.html_text(")
            if finalize.src is not None:
                self.write(finalize.src)
        else:
            super()._output_child_pre(node, frame, finalize)


class _Environment(jinja2.Environment):
    code_generator_class = _CodeGenerator
    html_text = staticmethod(html_text)


def environment(templates: Path) -> jinja2.Environment:
    env = _Environment(loader=jinja2.FileSystemLoader(str(templates)), autoescape=True,
                       bytecode_cache=_bytecode_cache(),
                       undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                       keep_trailing_newline=True, auto_reload=False)  # (edits: ``shared_environment``)
    env.filters.update(pct=pct, num=num, scalar=scalar, threat=marks.threat_label, code=inline_code)
    env.globals.update(modality=meta.modality, task_label=meta.TASK_LABEL, datasets=DATASETS,
                       chance_level=marks.chance_level, at_chance=marks.at_chance, headline=marks.headline,
                       top_group=marks.top_group, corruption_errors=marks.corruption_errors,
                       repository=meta.repository_url(), ci=ci, chance_mark=chance_mark, flag_badges=flag_badges,
                       rank_badge=lambda rank: Markup(rank_badge(rank)), check_rows=check_rows, error_rows=error_rows,
                       adversarial_rows=adversarial_rows, reported=reported, delta=delta, board_rows=board_rows,
                       labelled_points=svg.LABELLED_POINTS)
    from .explanations import load_explanations  # imports captum's study module only here

    # model pages and boards show the explanation-stability study (its files are part of code_key)
    env.globals["explanations"] = load_explanations(Path(templates).parent / "studies")
    return env


_ENVS: dict[tuple[str, str], jinja2.Environment] = {}


def shared_environment(templates: Path) -> jinja2.Environment:
    """``environment(templates)``, made once per process (its compiled templates are kept). Templates are
    checked for edits here, once per build: within a build Jinja does not stat each template a page
    extends or includes again (two stats per page)."""
    key = (str(Path(templates).resolve()), meta.repository_url())
    if key not in _ENVS:
        _ENVS[key] = environment(Path(templates))
    env = _ENVS[key]
    for cache_key, template in list(env.cache.items()):
        if not template.is_up_to_date:
            del env.cache[cache_key]
    return env


class Writer:
    """Writes the site's files, leaving a file whose bytes are unchanged untouched (mtime included), and
    records each output's size and mtime (``outputs``) for the next incremental build."""

    def __init__(self, out: Path):
        self.out = out
        self.outputs: dict[str, list[int]] = {}
        self._top = str(out)
        self._dirs: set[str] = set()

    def text(self, rel: str, content: str) -> None:
        self.bytes(rel, content.encode("utf-8"))

    def _path(self, rel: str) -> str:
        """The output file ``rel`` ("/"-separated) as a path, its folder made (strings: two per page, 36,000
        pages and records at 1,000 x 18, where pathlib's objects cost more than the writing)."""
        folder, _, name = rel.rpartition("/")
        folder = os.path.join(self._top, *folder.split("/")) if folder else self._top
        if folder not in self._dirs:
            os.makedirs(folder, exist_ok=True)
            self._dirs.add(folder)
        return os.path.join(folder, name)

    def bytes(self, rel: str, data: bytes) -> None:
        """Write ``data`` to ``rel``, leaving the file untouched (mtime included) when it holds them already.

        A file of the last build is rewritten in place, not replaced: on ext4 without a journal, creating
        a file shortly after deleting many costs up to a millisecond each (the allocator skips recently
        freed inodes one by one), so replacing 500 pages would cost more than rendering them. A file
        that is a hard link (a record published by ``copy``) or a symbolic link is never written through:
        it is removed and a new file written in its place."""
        path = self._path(rel)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            if not os.path.islink(path):
                raise MedbenchError(f"cannot write {path}: {exc}") from None
            fd = self._replace(path)
        try:
            st = os.fstat(fd)
            if st.st_nlink != 1 or not stat.S_ISREG(st.st_mode):  # linked to an input: never write through it
                os.close(fd)
                fd = self._replace(path)
                st = os.fstat(fd)
            if st.st_size != len(data) or (data and os.pread(fd, len(data), 0) != data):
                view, done = memoryview(data), 0
                while done < len(data):
                    done += os.pwrite(fd, view[done:], done)
                if st.st_size > len(data):  # (cut after writing: freeing blocks costs more than overwriting)
                    os.ftruncate(fd, len(data))
                st = os.fstat(fd)
            self.outputs[rel] = [st.st_size, st.st_mtime_ns]
        finally:
            os.close(fd)

    @staticmethod
    def _replace(path: str) -> int:
        """A new, empty file in place of a link at ``path``; returns its descriptor."""
        os.unlink(path)
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)

    def copy(self, rel: str, src: Path) -> None:
        """A copy of the input file ``src`` (a published record): a hard link where the output folder is on
        the same file system, so 18,000 records cost no bytes; a plain copy elsewhere. The build never
        writes into a file it linked (``bytes`` unlinks first), so the input cannot be changed through it."""
        path = self._path(rel)
        old = stat_of(path)
        if old is not None:
            if os.path.samefile(src, path):  # linked by an earlier build
                self.outputs[rel] = old
                return
            data = Path(src).read_bytes()
            if old[0] == len(data) and Path(path).read_bytes() == data:  # a copy with the same bytes: untouched
                self.outputs[rel] = old
                return
            os.unlink(path)
        try:
            os.link(src, path)
        except OSError:  # another file system, or links not allowed: copy the bytes
            Path(path).write_bytes(Path(src).read_bytes())
        self.outputs[rel] = stat_of(path)

    def keep(self, rel: str, stat: list[int]) -> None:
        """An output of an earlier build that is still current."""
        self.outputs[rel] = stat

    def listing(self) -> dict[str, list[str]]:
        """Every folder of the output (the build state aside), bottom-up, with its files: what ``prune`` looks
        at. The build takes it while the units are built (a walk of 36,000 files is not left to its end)."""
        top = str(self.out)
        state = os.path.join(top, STATE)
        found = {}
        for root, _, files in os.walk(top, topdown=False):
            if root != state and not root.startswith(state + os.sep):
                found[root] = files
        return found

    def prune(self, listing: dict[str, list[str]]) -> None:
        """Remove every file of ``listing`` (``listing``, taken earlier in this build: files made since are
        this build's) that this build did not write or keep, then the folders left empty."""
        top = str(self.out)
        outputs = self.outputs
        for root, files in listing.items():
            # outputs are keyed by their path in the site, "/"-separated
            prefix = "" if root == top else os.path.relpath(root, top).replace(os.sep, "/") + "/"
            for name in files:
                if prefix + name not in outputs:
                    try:
                        os.unlink(os.path.join(root, name))
                    except FileNotFoundError:
                        pass
            if root != top:
                try:
                    os.rmdir(root)  # (bottom-up: sub-folders went first; a folder with anything in it stays)
                except OSError:
                    pass
