"""The README and every ``--help`` epilog are the front door: each of their examples is executed.

Shell examples run through ``medbench.cli.main`` in a temporary working folder (so relative outputs such
as ``results/erm.json`` land there), on the real MedMNIST files. Long runs are shortened, never faked:
``evaluate`` gets a reduced protocol (``--set``: a 16-point attack subset, 2 attack iterations, one
corruption; the lite track too, whose full protocol tests/test_lite.py runs), ``data download`` reads from
a local mirror of the real files. Examples that need a file the reader supplies
(``submissions/my-model.yaml``, the reader's own model module for ``submission prepare``), change the
repository (``submission accept``) or train for minutes (``train``) are checked dry: the arguments parse
and the named entry or file resolves.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import need_real

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()

# evaluate runs on a CI-sized derived protocol (results marked '+custom'); the rest is the real harness
QUICK = ["--quiet", "--set", "adversarial.subset_size=16", "--set", "adversarial.n_iter=2",
         "--set", "adversarial.square_queries=10", "--set", "curves.apgd_n_iter=2",
         "--set", "clean.bootstrap_resamples=20", "--set", "corruptions.include=[pixelate]"]
PLACEHOLDERS = {"MODEL": "Baseline_ResNet8_ERM"}
CHECKPOINT = REPO / "model_zoo" / "breastmnist" / "Baseline_ResNet8_ERM.safetensors"


def _bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def readme_commands() -> list[str]:
    """Every `medbench ...` line of the README's shell blocks (continuations joined, comments dropped)."""
    out = []
    for block in _bash_blocks(README):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("medbench "):
                out.append(line)
    return out


def _parsers() -> list[tuple[str, argparse.ArgumentParser]]:
    from medbench.cli import build_parser

    found, todo = [], [("medbench", build_parser())]
    while todo:
        name, parser = todo.pop()
        found.append((name, parser))
        for action in parser._actions:  # noqa: SLF001 (argparse has no public API for subparsers)
            if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
                todo.extend((f"{name} {sub}", p) for sub, p in action.choices.items())
    return found


def help_examples() -> list[tuple[str, str]]:
    """(command, example) for every `medbench ...` line of every --help epilog."""
    out = []
    for name, parser in _parsers():
        for line in (parser.epilog or "").splitlines():
            m = re.match(r"^\s+(medbench \S.*?)(?:\s{2,}.*)?$", line)
            if m:
                out.append((name, m.group(1).strip()))
    return out


def _argv(cmd: str, tmp: Path, mirror: Path) -> tuple[list[str], str]:
    """The argv to run for an example, and how: 'run' it, or a 'dry' parse-and-resolve check."""
    argv = [PLACEHOLDERS.get(a, a) for a in shlex.split(cmd)[1:]]
    if argv[:2] == ["submission", "accept"] or argv[0] == "train":
        return argv, "dry"
    if argv[:2] == ["submission", "prepare"]:  # imports the reader's own module (tests/test_onnx_submission.py runs it)
        return argv, "dry"
    if argv[0] == "study" and argv[1] != "list":  # trains models for minutes: each study's own test runs it
        return argv, "dry"
    if argv[:2] == ["submission", "validate"] and not all((tmp / f).exists() for f in argv[2:] if f.endswith(".yaml")):
        return argv, "dry"
    if "--weights" in argv:
        argv[argv.index("--weights") + 1] = str(CHECKPOINT)
    if argv[0] == "evaluate" and "--track" in argv and "lite" in argv:  # lite2 shortened the same way
        argv += ["--quiet", "--set", "clean.bootstrap_resamples=20", "--set", "adversarial.subset_size=16",
                 "--set", "adversarial.n_iter=2", "--set", "adversarial.square_queries=10"]
    elif argv[0] == "evaluate" and "--list-archs" not in argv:
        argv += QUICK
    if argv[0] == "run":  # the matrix shortened to one model's clean cells (the examples' full matrices take hours),
        # on the local pool: starting Ray costs more than the cells (tests/test_matrix.py runs the Ray executor)
        for flag, value in (("--models", "Baseline_ResNet8_ERM"), ("--datasets", "breastmnist"), ("--threats", "clean"),
                            ("--executor", "local")):
            if flag in argv:
                argv[argv.index(flag) + 1] = value
        argv += ["--store", str(tmp / "matrix-store"), "--quiet"]
    if argv[:2] == ["data", "download"]:
        for flag in ("--root", "--data-root", "--mirror"):
            if flag in argv:
                i = argv.index(flag)
                del argv[i:i + 2]
        argv += ["--data-root", str(tmp / "downloaded"), "--mirror", mirror.as_uri(), "--quiet"]
    return argv, "run"


def _dry_check(argv: list[str], tmp: Path) -> None:
    from medbench.cli import build_parser
    from medbench.zoo import get_entry

    args = build_parser().parse_args(argv)
    if argv[0] == "train" and not args.entry.endswith(".yaml"):
        get_entry(args.entry, args.dataset)
    if argv[0] == "train" and args.entry.endswith(".yaml"):
        assert (REPO / args.entry).is_file(), f"{args.entry} does not exist"
    if argv[0] == "study":
        from medbench.cli.study import _options
        from medbench.data import get_spec
        from medbench.studies import get_study

        study = get_study(args.study)
        study.options.model_validate(_options(args.options))
        get_spec(args.dataset)


ALL_EXAMPLES = [("README", c) for c in readme_commands()] + help_examples()


def test_examples_were_found():
    """The collectors see the examples (a silent regex failure would make the test below vacuous)."""
    groups = {c.split()[1] for _, c in ALL_EXAMPLES}
    assert {"evaluate", "run", "data", "zoo", "corruptions", "train", "submission", "leaderboard"} <= groups
    assert sum(1 for w, _ in ALL_EXAMPLES if w != "README") >= 20


@pytest.mark.slow
@pytest.mark.realdata
def test_every_readme_and_help_example_runs(real_root, tmp_path, monkeypatch, capsys):
    from medbench.cli import main

    need_real(real_root, "breastmnist.npz", "pneumoniamnist.npz", "retinamnist.npz", "adrenalmnist3d_64.npz")
    monkeypatch.setenv("MEDBENCH_DATA", str(real_root))
    monkeypatch.chdir(tmp_path)
    for folder in ("submissions", "model_zoo"):
        (tmp_path / folder).symlink_to(REPO / folder)
    failures = []
    seen = set()
    for where, cmd in ALL_EXAMPLES:
        if cmd in seen:
            continue
        seen.add(cmd)
        argv, mode = _argv(cmd, tmp_path, real_root)
        try:
            if mode == "dry":
                _dry_check(argv, tmp_path)
                continue
            code = main(argv)
        except SystemExit as exc:  # argparse errors
            code = exc.code
        except Exception as exc:  # noqa: BLE001 (collect every failing example, then report them all)
            code = f"{type(exc).__name__}: {exc}"
        err = capsys.readouterr().err
        if code != 0:
            failures.append(f"[{where}] {cmd}\n    -> {code}: {err.strip()[-400:]}")
    assert not failures, "examples that fail:\n" + "\n".join(failures)
    # what the README promises the headline command writes
    assert (tmp_path / "results" / "erm.json").is_file() and (tmp_path / "results" / "erm.png").is_file()


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.parametrize("index", range(len(_python_blocks(README))))
def test_readme_python_blocks_run(real_root, tmp_path, index):
    need_real(real_root, "breastmnist.npz")
    code = _python_blocks(README)[index]
    (tmp_path / "results").mkdir()
    env = {**os.environ, "MEDBENCH_DATA": str(real_root), "PYTHONPATH": str(REPO), "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_every_help_page_renders():
    from medbench.cli import main

    for name, _ in _parsers():
        with pytest.raises(SystemExit) as exc:
            main([*name.split()[1:], "--help"])
        assert exc.value.code == 0, name


def test_headline_outputs_are_git_ignored():
    """The README's example outputs (results/, out/) must not end up as untracked files in the repo."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    for path in ("results/erm.json", "results/erm.png", "out/x.json"):
        proc = subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q", path])
        assert proc.returncode == 0, f"{path} is not git-ignored"


def test_ci_runs_exactly_the_readme_test_command():
    section = README.split("## Run the tests", 1)[1]
    test_cmd = _bash_blocks(section)[0].strip()
    ci = (REPO / ".ci" / "run").read_text()
    assert any(line.strip() == test_cmd for line in ci.splitlines())


def test_readme_cli_commands_exist():
    """Every `medbench <group> ...` in the README names a real command group."""
    from medbench.cli import build_parser

    parser = build_parser()
    groups = set(parser._subparsers._group_actions[0].choices)  # noqa: SLF001 (argparse has no public API)
    used = set(re.findall(r"^\s*medbench ([a-z]+)", "\n".join(_bash_blocks(README)), flags=re.M))
    assert used and used <= groups, f"README uses unknown commands: {used - groups}"
