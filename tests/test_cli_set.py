"""``--set``: every bad item is a one-line usage error (exit status 2) naming the key, the value and what
is expected, for every command that takes it; checked against the protocol's (or the study's) own types."""

from __future__ import annotations

import pytest

from medbench.cli import main

MODEL = "Baseline_ResNet8_ERM"
PROTOCOL_CASES = [  # (item, what the message must say)
    ("adversarial.n_iter=abc", ["adversarial.n_iter=abc", "an integer (now 100)", "got a string 'abc'"]),
    ("adversarial.n_iter=-5", ["adversarial.n_iter=-5", "non-negative integer (now 100)", "got -5"]),
    ("adversarial.n_iter=2.5", ["adversarial.n_iter=2.5", "an integer (now 100)", "got a number 2.5"]),
    ("adversarial.n_itr=3", ["no key 'adversarial.n_itr'", "Did you mean adversarial.n_iter"]),
    ("adversarial.n_iter", ["'adversarial.n_iter'", "expected KEY=VALUE"]),
    ("adversarial.n_iter.x=1", ["adversarial.n_iter is a value, not a section"]),
    ("clean.ci_level=[1", ["clean.ci_level=[1", "not valid YAML"]),
]
STUDY_CASES = [
    ("n_images=abc", ["n_images='abc'", "valid integer"]),
    ("n_images=-5", ["n_images=-5", "greater than or equal to 2"]),
    ("n_imgs=3", ["n_imgs=3", "Its options: n_images"]),
    ("n_images", ["'n_images'", "NAME=VALUE"]),
]
COMMANDS = {
    "evaluate": ["evaluate", MODEL, "--dataset", "breastmnist", "--threats", "clean", "--quiet"],
    "run": ["run", "--models", MODEL, "--datasets", "breastmnist", "--threats", "clean", "--quiet"],
    "lite": ["evaluate", MODEL, "--dataset", "breastmnist", "--track", "lite", "--quiet"],
}


def _one_line_usage_error(argv, capsys, says):
    code = main(argv)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, captured
    assert len(lines) == 1 and lines[0].startswith(("error: --set", "error: Bad options")), lines
    for part in says:
        assert part in lines[0], lines[0]


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("item, says", PROTOCOL_CASES, ids=[c[0] for c in PROTOCOL_CASES])
def test_a_bad_protocol_setting_is_a_usage_error(command, item, says, capsys, tmp_path):
    argv = [*COMMANDS[command], "--set", item]
    if command == "run":
        argv += ["--store", str(tmp_path / "store")]
    if command == "lite":  # the lite track's protocol runs 25 iterations
        says = [s.replace("now 100", "now 25") for s in says]
    _one_line_usage_error(argv, capsys, says)


@pytest.mark.parametrize("item, says", STUDY_CASES, ids=[c[0] for c in STUDY_CASES])
def test_a_bad_study_option_is_a_usage_error(item, says, capsys, tmp_path):
    argv = ["study", "explanation-stability", "--dataset", "breastmnist", "--set", item, "--out", str(tmp_path)]
    _one_line_usage_error(argv, capsys, says)


def test_a_good_setting_derives_a_custom_protocol():
    from medbench.cli.common import protocol_from_settings

    proto = protocol_from_settings(["adversarial.n_iter=7", "clean.ci_level=0.9", "corruptions.include=[pixelate]"])
    assert not proto.is_standard and proto.get("adversarial.n_iter") == 7 and proto.get("clean.ci_level") == 0.9
