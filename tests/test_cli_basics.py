"""The command line's plumbing: light start-up, clean pipes, clear errors for bad arguments."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "pandas", "matplotlib", "medmnist", "sklearn", "huggingface_hub", "pyautoattack", "scipy")


def _medbench(*args: str, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-m", "medbench", *args], capture_output=True, text=True, env=env,
                          cwd=kw.pop("cwd", REPO), **kw)


def test_cli_import_and_help_do_not_load_heavy_modules():
    """`medbench --help` must not pay for torch & co. (checked in a fresh interpreter via sys.modules)."""
    code = ("import sys, contextlib, io\n"
            "import medbench.cli\n"
            "p = medbench.cli.build_parser()\n"
            "for argv in (['--help'], ['evaluate', '--help'], ['zoo', 'list', '--help']):\n"
            "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
            "        medbench.cli.main(argv)\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)}).stdout.strip()
    assert out == "[]", f"heavy modules imported at CLI start-up: {out}"


def test_import_medbench_is_light_but_api_still_works():
    code = ("import sys, medbench\n"
            "assert 'torch' not in sys.modules, 'import medbench loaded torch'\n"
            "assert callable(medbench.benchmark) and 'breastmnist' in medbench.DATASETS\n"
            "print(medbench.__version__)\n")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.mark.parametrize("args", [["zoo", "list", "--format", "csv"]] + [
    pytest.param(a, marks=pytest.mark.slow)  # a subprocess each: one command in the quick subset
    for a in (["data", "info"], ["corruptions", "list"], ["evaluate", "--list-archs"], ["--help"])])
def test_closed_pipe_ends_quietly(args):
    """`medbench zoo list --format csv | head -3`: the reader leaves early; no traceback, a Unix-like status."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "MPLBACKEND": "Agg"}
    proc = subprocess.Popen([sys.executable, "-m", "medbench", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, cwd=REPO)
    proc.stdout.close()  # the reader is gone before the first write
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert proc.returncode in (0, 141)


@pytest.mark.parametrize("value, expected", [
    ("clean,Linf,corruption", "Did you mean 'corruptions'?"),
    ("Linf-8/255", "not budgets"),
    ("clean,,", None),
    ("l2-0.5", "L2"),
    ("robustness", "Choose from clean, corruptions, Linf, L2, curves, or all"),
    ("", "--threats is empty"),
])
def test_bad_threats_are_clear_errors_without_traceback(value, expected, capsys):
    from medbench.cli import main

    code = main(["evaluate", "Baseline_ResNet8_ERM", "--dataset", "breastmnist", "--threats", value, "--quiet",
                 "--set", "clean.bootstrap_resamples=5"]) if expected is not None else None
    if expected is None:  # stray commas are fine: parsing alone
        from medbench.cli.common import parse_threats

        assert parse_threats(value) == ["clean"]
        return
    err = capsys.readouterr().err
    assert code == 2 and expected in err and "Traceback" not in err, err


def test_unsupported_track_is_refused_before_any_work(capsys):
    from medbench.cli import main

    code = main(["evaluate", "Baseline_SmallCNN3D_ERM", "--dataset", "adrenalmnist3d", "--threats", "clean,L2"])
    err = capsys.readouterr().err
    assert code == 2 and "Linf only" in err


def test_ambiguous_zoo_id_lists_the_exact_commands(capsys):
    from medbench.cli import main
    from medbench.zoo import load_registry

    datasets = sorted(e.dataset for e in load_registry().entries if e.id == "Baseline_ResNet8_PGDAT")
    assert len(datasets) > 1
    for action in ("show", "download"):
        assert main(["zoo", action, "Baseline_ResNet8_PGDAT"]) == 1
        err = capsys.readouterr().err
        for d in datasets:
            assert f"medbench zoo {action} Baseline_ResNet8_PGDAT --dataset {d}" in err
    assert main(["zoo", "show", "Baseline_ResNet8_PGDAT", "--dataset", datasets[0]]) == 0
    assert "recipe" in capsys.readouterr().out


def test_corruptions_list_without_dataset_lists_the_suites(capsys):
    from medbench.cli import main

    assert main(["corruptions", "list"]) == 0
    out = capsys.readouterr().out
    assert "medmnist-c:" in out and "medbench-3d:" in out and "breastmnist" in out and "pixelate" in out


def test_list_archs_and_help_agree(capsys):
    from medbench.models.architectures import list_architectures
    from medbench.cli import main

    assert main(["evaluate", "--list-archs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:-1] == list_architectures()
    assert lines[-1].startswith("timm/<name>: any model of timm.list_models()") and "img_size" in lines[-1]


def test_data_root_is_one_name_everywhere_and_root_still_works(tmp_path, real_root, capsys):
    from conftest import need_real
    from medbench.cli import build_parser, main

    need_real(real_root, "breastmnist.npz")
    for argv in (["data", "download", "x", "--data-root", "D"], ["data", "download", "x", "--root", "D"],
                 ["data", "info", "--data-root", "D"], ["evaluate", "--data-root", "D"]):
        assert build_parser().parse_args(argv).data_root == os.path.abspath("D")  # made absolute as read
    help_text = build_parser()._subparsers._group_actions[0].choices["data"]  # noqa: SLF001
    dl = help_text._subparsers._group_actions[0].choices["download"].format_help()  # noqa: SLF001
    assert "--data-root" in dl and "--root" not in dl.replace("--data-root", "")
    mirror = real_root.as_uri()
    assert main(["data", "download", "breastmnist", "--root", str(tmp_path), "--mirror", mirror, "--quiet"]) == 0
    assert (tmp_path / "breastmnist.npz").is_file()


def test_protocol_set_rejects_unknown_keys(capsys):
    from medbench.cli import main

    assert main(["evaluate", "Baseline_ResNet8_ERM", "--dataset", "breastmnist", "--set", "adversarial.subsetsize=3"]) == 2
    err = capsys.readouterr().err
    assert "no key 'adversarial.subsetsize'" in err and "Did you mean adversarial.subset_size" in err
