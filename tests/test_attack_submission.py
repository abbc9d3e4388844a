"""Attack submissions (issue 25): adversarial examples for a ranked zoo model, verified example by example.

A file that breaks points the committed evaluation missed lowers the best-known column by exactly those
points, with provenance; a hostile file is refused with its reason and writes no record. Real zoo model
(Baseline_ResNet8_PGDAT, BreastMNIST, Linf-2/255), real test split, real pyautoattack.
"""

from __future__ import annotations

import functools
import hashlib
import json
import pickle

import numpy as np
import pytest
import torch
import yaml

from conftest import REPO, need_real
from medbench.attacks.best_known import best_known
from medbench.attacks.records import load_records, record_path
from medbench.cli import main as cli_main
from medbench.schema import EvaluationResult
from medbench.submission import verify_attack_submission
from medbench.submission.attack_examples import UNSTABLE, check_examples
from medbench.submission.attack_file import MAX_NPZ_BYTES

MODEL, DATASET, THREAT, EPS = "Baseline_ResNet8_PGDAT", "breastmnist", "Linf-2/255", 2 / 255
COMMITTED = REPO / "leaderboard" / "results"


@pytest.fixture(scope="module")
def data(real_root):
    import medbench

    need_real(real_root, "breastmnist.npz")
    images, labels = medbench.load_dataset(DATASET, "test", 28, real_root)
    return np.asarray(images), np.asarray(labels).reshape(-1).astype(np.int64)


@pytest.fixture(scope="module")
def pin():
    from medbench.zoo import get_entry

    return get_entry(MODEL, DATASET).weights.sha256


def clean(data, idx) -> np.ndarray:
    return data[0][np.asarray(idx)].astype(np.float32) / 255


def submit(folder, name: str, arrays: dict | None, pin: str, *, raw: bytes | None = None, **fields):
    """Write submissions/attacks/<name>.npz (``np.savez`` of ``arrays``, or ``raw`` bytes) and its YAML."""
    attacks = folder / "submissions" / "attacks"
    attacks.mkdir(parents=True, exist_ok=True)
    npz = attacks / f"{name}.npz"
    if raw is not None:
        npz.write_bytes(raw)
    else:
        np.savez_compressed(npz, **arrays)
    sha = hashlib.sha256(npz.read_bytes()).hexdigest() if npz.stat().st_size < MAX_NPZ_BYTES else "0" * 64
    data = dict(model_id=MODEL, dataset=DATASET, size=28, threat=THREAT, attack="APGD-CE", submitter="medbench tests",
                url="https://github.com/fra31/auto-attack", file=npz.name, sha256=sha, weights_sha256=pin)
    data.update(fields)
    path = attacks / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def validate(path, records, results, real_root, capsys) -> tuple[int, str]:
    code = cli_main(["submission", "validate", str(path), "--records", str(records), "--results", str(results),
                     "--data-root", str(real_root)])
    return code, capsys.readouterr().out


# ----------------------------------------------------------------------------- a stronger attack, honestly

@pytest.fixture(scope="module")
def weak_board(tmp_path_factory, real_root, data):
    """A leaderboard whose result for the zoo model comes from the real harness under a deliberately weak
    derived protocol (Square with 1 query, Linf-2/255 only; the protocol's own subset)."""
    import medbench
    from medbench.protocol import load_protocol

    proto = load_protocol()
    linf = [t for t in proto["adversarial"]["threats"]["Linf"] if t["label"] == THREAT]
    weak = proto.derive(**{"adversarial.square_queries": 1, "adversarial.threats": {"Linf": linf},
                           "adversarial.attack_sets": {"2": ["square"], "3": ["square"], "4+": ["square"]}})
    board = tmp_path_factory.mktemp("leaderboard")
    out = board / "results" / DATASET / f"{MODEL}.json"
    result = medbench.benchmark(MODEL, DATASET, threats="Linf", protocol=weak, data_root=real_root, out=out,
                                progress=False)
    assert out.is_file() and result.adversarial[THREAT].subset.indices_sha256
    return board, result


@pytest.fixture(scope="module")
def strong(weak_board, data):
    """APGD-CE (pyautoattack, the protocol's 100 iterations, 1 restart) on the points the weak run left
    robust: the indices and float32 images of every example it misclassifies."""
    import medbench
    from pyautoattack.autopgd_base import APGDAttack

    _, result = weak_board
    section = result.adversarial[THREAT]
    robust = np.asarray(section.subset.indices)[np.asarray(section.robust_flags)]
    model = medbench.load_model(MODEL, DATASET)
    x, y = torch.from_numpy(clean(data, robust)), torch.from_numpy(data[1][robust])
    apgd = APGDAttack(model, n_iter=100, norm="Linf", eps=EPS, seed=0, loss="ce", n_restarts=1, device="cpu")
    x_adv = apgd.perturb(x, y).detach()
    with torch.no_grad():
        broken = (model(x_adv).argmax(1) != y).numpy()
    return robust[broken].astype(np.int64), x_adv.numpy()[broken].astype(np.float32)


@pytest.mark.slow
@pytest.mark.realdata
def test_a_stronger_attack_lowers_the_best_known_column(weak_board, strong, tmp_path, real_root, capsys, pin):
    board, result = weak_board
    section = result.adversarial[THREAT]
    indices, images = strong
    assert len(indices) >= 3, "APGD-CE (100 iterations) breaks at least 3 points a 1-query Square leaves robust"
    path = submit(tmp_path, "Tests2026APGD", {"indices": indices, "images": images}, pin)
    records = tmp_path / "leaderboard"

    code, out = validate(path, records, board / "results", real_root, capsys)
    assert code == 0, out
    (rec,) = load_records(records)[(DATASET, MODEL, 28, THREAT)]
    assert record_path(records, rec).is_file()
    assert rec.file_sha256 == hashlib.sha256(path.with_suffix(".npz").read_bytes()).hexdigest()
    assert (rec.submitter, rec.attack, rec.kind, rec.weights_sha256) == ("medbench tests", "APGD-CE", "submission", pin)
    assert sorted(b.index for b in rec.breaks) == sorted(indices.tolist()) and rec.refused == {}
    assert all(b.distance <= EPS + rec.tolerance for b in rec.breaks)

    settings = dict(weights_sha256=pin, num_classes=2, bootstrap_resamples=1000, bootstrap_seed=0, ci_level=0.95)
    bk = best_known(section, [rec], **settings)
    assert sum(bk.robust_flags) == sum(section.robust_flags) - len(indices)
    assert bk.robust_balanced_accuracy < section.robust_balanced_accuracy
    assert bk.sources[-1].points == len(indices) and bk.sources[-1].file_sha256 == rec.file_sha256
    assert f"breaks {len(indices)} point(s) beyond AutoAttack, {len(indices)} new to the column" in out
    assert f"{section.robust_balanced_accuracy:.4f} -> {bk.robust_balanced_accuracy:.4f}" in out

    code, out = validate(path, records, board / "results", real_root, capsys)  # the same file again: no change
    assert code == 0 and "0 new to the column" in out, out
    assert f"{bk.robust_balanced_accuracy:.4f} -> {bk.robust_balanced_accuracy:.4f}" in out
    assert len(load_records(records)[(DATASET, MODEL, 28, THREAT)]) == 1


@pytest.mark.slow
@pytest.mark.realdata
def test_examples_that_fail_a_per_example_check_are_counted_not_fatal(weak_board, strong, data, tmp_path,
                                                                      real_root, pin):
    board, result = weak_board
    indices, images = strong
    section = result.adversarial[THREAT]
    correct = [i for i, f in zip(section.subset.indices, section.robust_flags) if f and i not in set(indices)][:2]
    far = np.clip(clean(data, indices[2:3]) + 3 / 255, 0, 1)  # pushed out of the 2/255 ball
    arrays = {"indices": np.concatenate([indices[:2], correct, indices[2:3]]).astype(np.int64),
              "images": np.concatenate([images[:2], clean(data, correct), far]).astype(np.float32)}
    report = verify_attack_submission(submit(tmp_path, "Mixed", arrays, pin), results=board / "results",
                                      data_root=real_root)
    assert report.passed, report.to_text()
    assert [b.index for b in report.verified.breaks] == indices[:2].tolist()
    refused = report.verified.refused
    assert refused.get("correctly classified") == len(correct)
    assert sum(v for k, v in refused.items() if k.startswith("outside the Linf ball")) == 1


# ----------------------------------------------------------------------------- hostile files

@functools.cache
def _robust_three() -> np.ndarray:
    """Three points the committed AutoAttack left robust (so the clean images are classified correctly)."""
    section = EvaluationResult.from_json(COMMITTED / DATASET / f"{MODEL}.json").adversarial[THREAT]
    return np.asarray(section.subset.indices)[np.asarray(section.robust_flags)][:3].astype(np.int64)


def _three(data):
    idx = _robust_three()
    return idx, clean(data, idx)


def _pickled_npz(tmp_path, data) -> bytes:
    idx, x = _three(data)
    path = tmp_path / "obj.npz"
    np.savez(path, indices=np.array(list(idx), dtype=object), images=x)
    return path.read_bytes()


HOSTILE = {  # name -> (build(data, tmp_path) -> (arrays, raw bytes, YAML changes), what the report says)
    "wrong shape": (lambda d, t: ({"indices": _three(d)[0], "images": np.zeros((3, 1, 32, 32), np.float32)}, None, {}),
                    "images has shape (3, 1, 32, 32), expected (k, 1, 28, 28)"),
    "NaN": (lambda d, t: ({"indices": _three(d)[0], "images": np.where(_three(d)[1] > 0.5, np.nan,
                                                                       _three(d)[1]).astype(np.float32)}, None, {}),
            "NaN or infinite"),
    "huge": (lambda d, t: (None, b"", {}), f"at most {MAX_NPZ_BYTES:,} bytes"),
    "pickled object array": (lambda d, t: (None, _pickled_npz(t, d), {}), "never unpickles"),
    "a plain pickle": (lambda d, t: (None, pickle.dumps({"indices": [1]}), {}), "is not an .npz archive"),
    "index outside the subset": (lambda d, t: ({"indices": np.array([*_three(d)[0][:2], 156]), "images": _three(d)[1]},
                                                None, {}),
                                 "indices[2] = 156 is not in the Linf-2/255 attack subset"),
    "index repeated": (lambda d, t: ({"indices": _three(d)[0][[0, 1, 0]], "images": _three(d)[1]}, None, {}),
                       "appears 2 times"),
    "outside the ball": (lambda d, t: ({"indices": _three(d)[0], "images": np.clip(_three(d)[1] + 4 / 255, 0, 1)},
                                       None, {}), "3 outside the Linf ball"),
    "sha256 mismatch": (lambda d, t: ({"indices": _three(d)[0], "images": _three(d)[1]}, None, {"sha256": "0" * 64}),
                        "the YAML says 0000"),
    "other weights": (lambda d, t: ({"indices": _three(d)[0], "images": _three(d)[1]}, None,
                                    {"weights_sha256": "ab" * 32}), "only the pinned weights are ranked"),
    "unknown threat": (lambda d, t: ({"indices": _three(d)[0], "images": _three(d)[1]}, None, {"threat": "Linf-8/255"}),
                       "'Linf-8/255' is not a threat of protocol"),
    "extra array": (lambda d, t: ({"indices": _three(d)[0], "images": _three(d)[1], "labels": np.ones(3)}, None, {}),
                    "unexpected array 'labels'"),
    "missing images": (lambda d, t: ({"indices": _three(d)[0]}, None, {}), "missing array 'images'"),
    "fewer images than indices": (lambda d, t: ({"indices": _three(d)[0], "images": _three(d)[1][:2]}, None, {}),
                                  "images holds 2 image(s) for 3 indices"),
    "float64 images": (lambda d, t: ({"indices": _three(d)[0], "images": _three(d)[1].astype(np.float64)}, None, {}),
                       "images has dtype float64, not uint8 or float32"),
    "clean uint8 examples": (lambda d, t: ({"indices": _three(d)[0], "images": d[0][_three(d)[0]]}, None, {}),
                             "3 correctly classified"),
    "unknown model": (lambda d, t: ({"indices": _three(d)[0], "images": _three(d)[1]}, None,
                                    {"model_id": "Baseline_ResNet8_PGDA"}), "did you mean Baseline_ResNet8_PGDAT"),
}


@pytest.mark.realdata
@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_file_is_refused_with_its_reason_and_writes_no_record(case, data, tmp_path, real_root, capsys, pin):
    build, reason = HOSTILE[case]
    arrays, raw, changes = build(data, tmp_path)
    path = submit(tmp_path, "Hostile", arrays, pin, raw=raw, **changes)
    if case == "huge":  # sparse: 64 MiB + 1 byte of nothing, refused before it is read
        with open(path.with_suffix(".npz"), "r+b") as f:
            f.truncate(MAX_NPZ_BYTES + 1)
    records = tmp_path / "leaderboard"
    code, out = validate(path, records, COMMITTED, real_root, capsys)
    assert code == 1 and "FAIL" in out and reason in out, out
    assert "Traceback" not in out and "unexpected error" not in out
    assert not (records / "attacks").exists()


@pytest.mark.realdata
def test_a_result_computed_with_other_weights_refuses_the_file(data, tmp_path, real_root, capsys, pin):
    results = tmp_path / "results" / DATASET
    results.mkdir(parents=True)
    committed = json.loads((COMMITTED / DATASET / f"{MODEL}.json").read_text())
    committed["provenance"]["weights_sha256"] = "cd" * 32
    (results / f"{MODEL}.json").write_text(json.dumps(committed))
    idx, x = _three(data)
    path = submit(tmp_path, "Stale", {"indices": idx, "images": x}, pin)
    code, out = validate(path, tmp_path / "leaderboard", tmp_path / "results", real_root, capsys)
    assert code == 1 and "was computed with weights cdcdcdcdcdcd" in out, out
    assert not (tmp_path / "leaderboard" / "attacks").exists()


@pytest.mark.realdata
def test_a_batch_dependent_model_gains_no_break(data):
    """Predictions that change with the batch (here: inputs centred on the batch mean) never count."""
    import medbench

    model = medbench.load_model(MODEL, DATASET)

    class BatchCentred(torch.nn.Module):
        def forward(self, x):
            return model(x - x.mean(0, keepdim=True) + 0.5)

    idx = np.arange(64)
    x = clean(data, idx)
    verdicts = check_examples(BatchCentred().eval(), x, x, data[1][idx], norm="Linf", eps=EPS)
    with torch.no_grad():
        alone = np.array([int(BatchCentred()(torch.from_numpy(x[i:i + 1])).argmax(1)) for i in range(len(x))])
    differs = verdicts.predicted != alone
    assert differs.any(), "the wrapper must make some prediction depend on the batch"
    assert all(verdicts.refused[i] == UNSTABLE for i in np.flatnonzero(differs))
    assert all(alone[i] != data[1][idx[i]] for i, why in enumerate(verdicts.refused) if why is None)


def test_the_template_is_a_valid_submission_for_the_pinned_weights(pin):
    from medbench.schema import AttackSubmission

    text = (REPO / "submissions" / "attacks" / "TEMPLATE.yaml").read_text()
    sub = AttackSubmission.model_validate(yaml.safe_load(text))
    assert (sub.model_id, sub.dataset, sub.weights_sha256) == (MODEL, DATASET, pin)


def test_bad_record_files_are_reported_not_raised(tmp_path):
    from medbench.schema import Break, VerifiedAttack
    from medbench.attacks.records import write_record

    rec = VerifiedAttack(model_id=MODEL, dataset=DATASET, size=28, threat=THREAT, norm="Linf", eps=EPS, attack="FMN",
                         kind="submission", submitter="x", file_sha256="ab" * 32, weights_sha256="cd" * 32,
                         protocol_version="3", subset_sha256="ef" * 32, subset_labels=[0, 1], tolerance=1e-5,
                         submitted=1, breaks=[Break(index=1, predicted=0, distance=0.001)],
                         verified_at="2026-12-07T00:00:00Z", medbench_version="test")
    path = write_record(tmp_path, rec)
    assert path == tmp_path / "attacks" / DATASET / f"{MODEL}--Linf-2_255--{'ab' * 6}.json"
    (path.parent / "broken.json").write_text("{not json")
    moved = path.parent.parent / "Other" / path.name
    moved.parent.mkdir()
    moved.write_bytes(path.read_bytes())
    records = load_records(tmp_path)
    assert records[(DATASET, MODEL, 28, THREAT)] == [rec]
    assert len(records.problems) == 2
    assert any("broken.json: not a valid attack record" in p for p in records.problems)
    assert any("Other/" in p and f"move it to attacks/{DATASET}/" in p for p in records.problems)


@pytest.mark.realdata
def test_files_outside_the_folder_are_refused(data, tmp_path, real_root, capsys, pin):
    """The .npz must be a regular file beside the YAML: a path in ``file`` or a symbolic link is refused."""
    idx, x = _three(data)
    path = submit(tmp_path, "Escape", {"indices": idx, "images": x}, pin, file="../Escape.npz")
    code, out = validate(path, tmp_path / "leaderboard", COMMITTED, real_root, capsys)
    assert code == 1 and "field 'file'" in out, out
    target = tmp_path / "elsewhere.npz"
    np.savez(target, indices=idx, images=x)
    path = submit(tmp_path, "Linked", {"indices": idx, "images": x}, pin)
    path.with_suffix(".npz").unlink()
    path.with_suffix(".npz").symlink_to(target)
    code, out = validate(path, tmp_path / "leaderboard", COMMITTED, real_root, capsys)
    assert code == 1 and "submissions/attacks/Linked.npz is a symbolic link" in out, out
    assert not (tmp_path / "leaderboard" / "attacks").exists()
