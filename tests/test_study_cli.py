"""``medbench study``: results go to the user's folder unless a maintainer publishes, and a study that
takes long says how long before it starts and in its --help."""

from __future__ import annotations

from pathlib import Path

from medbench.cli import build_parser, main
from medbench.cli.study import output_folder
from medbench.paths import leaderboard_root


def test_results_go_to_the_users_folder_unless_published(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(["study", "nonrobust-features", "--dataset", "breastmnist"])
    assert output_folder(args).resolve() == tmp_path / "medbench-studies"
    assert leaderboard_root() not in output_folder(args).resolve().parents
    args = build_parser().parse_args(["study", "nonrobust-features", "--dataset", "breastmnist", "--publish"])
    assert output_folder(args) == leaderboard_root() / "studies"


def test_publish_and_out_are_exclusive(capsys):
    try:
        main(["study", "architectures", "--dataset", "breastmnist", "--publish", "--out", "x"])
    except SystemExit as exc:
        assert exc.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_explanation_stability_prints_its_estimate_before_it_starts(tmp_path, capsys):
    empty = tmp_path / "no-data"
    empty.mkdir()
    code = main(["study", "explanation-stability", "--dataset", "breastmnist", "--set", "n_images=16",
                 "--set", "retrain_seeds=[]", "--data-root", str(empty), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1 and "breastmnist" in err  # the data is missing: the estimate came first all the same
    first = err.splitlines()[0]
    assert first.startswith("expected duration: ~") and "no retraining" in first
    assert not (tmp_path / "out").exists()


def test_explanation_stability_help_says_how_long(capsys):
    try:
        main(["study", "explanation-stability", "--help"])
    except SystemExit:
        pass
    text = " ".join(capsys.readouterr().out.split())
    assert "how long (breastmnist, default options): expected duration: ~" in text
    assert "retrain_seeds=[] skips them" in text


def test_the_readme_quick_example_is_quick():
    """The README's quick look must skip the retrainings (the hours-long part) and say it does."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    line = next(x for x in readme.splitlines() if x.startswith("medbench study explanation-stability"))
    assert "retrain_seeds=[]" in line, line
