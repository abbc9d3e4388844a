"""Study pages: ``studies/index.html`` and one page per study, from ``leaderboard/studies/<study>/*.json``.

Each study's findings render the same way (value, interval, comparison, test); a study may add its own
section with a template ``studies/<study>.html`` in the templates folder, which gets the typed result ``r``
and ``figures(r)`` (the study module's own ``figures`` function, when it has one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..studies import get_study, list_studies, load_result
from ..studies.base import Study, StudyResult


@dataclass
class StudyPage:
    study: Study
    results: list[StudyResult] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)  # published name -> source file

    @property
    def slug(self) -> str:
        return self.study.name


def load_studies(root: Path, problems: list[str]) -> list[StudyPage]:
    """Every registered study with its committed results (a broken file becomes a build problem)."""
    pages = []
    for name in list_studies():
        page = StudyPage(get_study(name))
        for path in sorted((root / name).glob("*.json")) if (root / name).is_dir() else []:
            try:
                result = load_result(path)
            except Exception as exc:  # noqa: BLE001 - one bad file must not hide the others
                problems.append(f"{path}: not a valid {name} result ({type(exc).__name__}: {str(exc)[:200]})")
                continue
            page.results.append(result)
            page.files[f"{name}/{path.name}"] = path
        page.results.sort(key=lambda r: (r.dataset, r.size))
        pages.append(page)
    return pages


def study_figures(study: Study):
    """The study module's ``figures(result) -> {name: svg}`` (for its own template), or one giving none."""
    import importlib

    from ..studies import STUDIES

    fn = getattr(importlib.import_module(STUDIES[study.name]), "figures", None)
    return fn if fn is not None else (lambda result: {})


def render_studies(env, w, pages: list[StudyPage], common: dict) -> int:
    """Write the study index and pages (and the result files they link); returns the page count."""
    index = env.get_template("studies.html")
    w.write("studies/index.html", index.render(root="../", pages=pages, **common))
    tpl = env.get_template("study.html")
    for page in pages:
        extra = f"studies/{page.slug}.html"
        has_extra = extra in env.list_templates()
        w.write(f"studies/{page.slug}.html", tpl.render(root="../", page=page, extra=extra if has_extra else None,
                                                       figures=study_figures(page.study), **common))
        for rel, src in page.files.items():
            w.write(f"studies/{rel}", src.read_bytes())
    return 1 + len(pages)
