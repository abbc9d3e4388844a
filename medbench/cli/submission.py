"""``medbench submission``: prepare an ONNX submission, validate submission files (CI on pull requests) and
accept them into the zoo."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import add_data_args

DESCRIPTION = """Submissions by pull request (see submissions/README.md).

prepare: export your own model (any architecture) to ONNX on your machine, check the file the way CI
does and write a folder with the .onnx file, its sha256, probe.json and a filled-in submission YAML.

validate: schema, unique id, licence, links, paths, size limits; weights reachable with the pinned
sha256 and size, safetensors, strict load, parameter count (ONNX: graph checks, conversion, logits
equal to onnxruntime's); admission checks; --local checks a prepared folder before uploading; with --reproduce the
claimed numbers are re-measured (clean: full test split, within 0.5 points; robust: a stratified
subset, the claim inside its 95% bootstrap interval). Exit code 0 only when every check passes.
An attack submission (submissions/attacks/<name>.yaml with its .npz, see submissions/attacks/README.md)
is verified example by example against the zoo model's pinned weights; when it passes, its record is
written to <records>/attacks/<dataset>/ and the change of the best-known column is printed.

accept: validate, run the full protocol, move the entry into model_zoo/<dataset>/, write
leaderboard/results/<dataset>/<id>.json and rebuild the site."""

EXAMPLES = """examples:
  medbench submission prepare mymodels.net:build --dataset breastmnist --id Smith2026Onnx --out onnx_out
  medbench submission validate onnx_out/Smith2026Onnx.yaml --local
  medbench submission validate submissions/Smith2026Trades.yaml
  medbench submission validate submissions/*.yaml --reproduce --report report.md
  medbench submission validate submissions/attacks/Smith2026FMN.yaml --records leaderboard
  medbench submission accept submissions/Smith2026Trades.yaml
"""


def register(sub) -> None:
    p = sub.add_parser("submission", help="validate or accept model submissions", description=DESCRIPTION,
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    cmds = p.add_subparsers(dest="submission_command", metavar="SUBCOMMAND")
    v = cmds.add_parser("validate", help="check submission files; exit 0 only if all pass",
                        description="Check submission files (models, or attack files in submissions/attacks/) "
                                    "and write a markdown report; a verified attack file's record is written "
                                    "under --records.")
    v.add_argument("files", nargs="+", metavar="FILE",
                   help="submissions/<ModelId>.yaml or submissions/attacks/<name>.yaml file(s)")
    v.add_argument("--reproduce", action="store_true", help="re-measure the claimed numbers")
    v.add_argument("--local", action="store_true",
                   help="check a folder written by `prepare` before uploading: the YAML may lie anywhere and its "
                        "weights may be the bundled file next to it (CI never uses this)")
    v.add_argument("--report", metavar="FILE.md", help="write the markdown report (pull-request comment) here")
    v.add_argument("--subset-size", type=int, default=200,
                   help="stratified test subset for the robust re-measurement and admission checks (default 200)")
    v.add_argument("--n-iter", type=int, default=None, help="attack iterations (default: the protocol's 100)")
    v.add_argument("--square-queries", type=int, default=None, help="Square queries (default: the protocol's)")
    v.add_argument("--records", metavar="DIR",
                   help="leaderboard folder that receives verified attack records (default: the leaderboard root)")
    v.add_argument("--run-by-medbench", action="store_true",
                   help="label verified attack files as extra attacks run by the maintainers (medbench attack run), "
                        "not as submissions")
    v.add_argument("--results", metavar="DIR",
                   help="results folder an attack file is checked against (default: <records>/results with "
                        "--records, else <leaderboard>/results)")
    _common(v)
    v.set_defaults(func=_validate)
    _register_prepare(cmds)
    a = cmds.add_parser("accept", help="move a validated submission into the zoo, evaluate it, rebuild the site",
                        description="Accept a submission: full protocol run, registry entry, results, site.")
    a.add_argument("file", metavar="FILE", help="submissions/<ModelId>.yaml")
    a.add_argument("--quick", action="store_true",
                   help="reduced protocol (64-image subset, 10 iterations; marked +custom) to try the pipeline")
    a.add_argument("--threats", default="all", help="threats to run (default: all)")
    a.add_argument("--results", metavar="DIR", help="results folder (default: leaderboard/results)")
    a.add_argument("--site", metavar="DIR", help="site folder to rebuild (default: site)")
    a.add_argument("--reference", metavar="FILE.json",
                   help="corruption reference result for BE / rBE (default: the dataset's ERM baseline result)")
    _common(a)
    a.set_defaults(func=_accept)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--registry", metavar="DIR", help="model registry (default: the zoo's model_zoo/)")
    p.add_argument("--device", default=None, help="torch device (default: cpu)")
    add_data_args(p)


def _validate(args: argparse.Namespace) -> int:
    from ..submission import ReproduceSettings, combine_markdown, looks_like_attack_submission, validate_submission

    settings = ReproduceSettings(subset_size=args.subset_size, n_iter=args.n_iter, square_queries=args.square_queries)
    reports = []
    for f in args.files:
        if looks_like_attack_submission(f):
            report = _validate_attack(f, args)
        else:
            report = validate_submission(f, registry=args.registry, reproduce=args.reproduce, settings=settings,
                                         data_root=args.data_root, device=args.device, local=args.local)
            print(report.to_text())
        reports.append(report)
    if args.report:
        try:
            Path(args.report).write_text(combine_markdown(reports), encoding="utf-8")
        except OSError as exc:
            print(f"error: cannot write the report to {args.report}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        print(f"report written to {args.report}")
    ok = all(r.passed for r in reports)
    print(f"{sum(r.passed for r in reports)}/{len(reports)} submission(s) pass", file=sys.stderr)
    return 0 if ok else 1


PREPARE_DESCRIPTION = """Export your model to ONNX and write a submission folder (runs your code, on your machine).

FACTORY is MODULE:FUNCTION, imported from the current folder (or PYTHONPATH): a function with no
arguments that returns your trained torch.nn.Module. The model takes float images in [0, 1] of the
dataset's shape (N x C x H x W, or N x C x D x H x W for 3D) and returns logits N x K; put the
normalisation inside forward.

The model is exported with torch.onnx.export (opset 17, dynamic batch axis) and the file is checked
as CI will: standard ONNX ops from medbench's allowlist only (no custom domains, no If/Loop/Scan, no
external data, size limits), onnx2torch conversion, and logits equal to onnxruntime's within 1e-4 on
the first 64 test images (uniform noise when the data is absent). A refusal names every offending
node. OUT receives:
  <ID>.onnx     the graph to upload to the Hugging Face Hub
  <ID>.sha256   its sha256 (the same as `sha256sum <ID>.onnx`)
  probe.json    input and output shapes, opset, op counts, parameters, the onnxruntime difference
  <ID>.yaml     the submission (weights measured; fill in the TODO fields and the claimed numbers)
Then: medbench submission validate OUT/<ID>.yaml --local (admission checks on the converted model)."""


def _register_prepare(cmds) -> None:
    p = cmds.add_parser("prepare", help="export your model to ONNX and write a submission folder",
                        description=PREPARE_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
                        epilog="example:\n  medbench submission prepare mymodels.net:build --dataset breastmnist "
                               "--id Smith2026Onnx --out onnx_out")
    p.add_argument("factory", metavar="FACTORY", help="MODULE:FUNCTION returning your trained nn.Module")
    p.add_argument("--dataset", required=True, help="MedMNIST flag the model is trained on, e.g. breastmnist")
    p.add_argument("--id", required=True, dest="model_id", help="submission id, Author2026Keyword (Smith2026Onnx)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write (created if missing)")
    p.add_argument("--size", type=int, default=28, help="image size the model takes (default 28)")
    p.add_argument("--license", default="Apache-2.0", help="SPDX id of the model's licence (default Apache-2.0)")
    p.add_argument("--mean", type=float, nargs="+", default=None,
                   help="normalisation mean your module applies (recorded in the YAML only; default 0)")
    p.add_argument("--std", type=float, nargs="+", default=None,
                   help="normalisation std your module applies (recorded in the YAML only; default 1)")
    add_data_args(p)
    p.set_defaults(func=_prepare)


def _prepare(args: argparse.Namespace) -> int:
    from ..errors import MedbenchError
    from ..submission.prepare import prepare_onnx_submission

    try:
        done = prepare_onnx_submission(args.factory, args.dataset, args.out, model_id=args.model_id, size=args.size,
                                       license=args.license, mean=args.mean, std=args.std, data_root=args.data_root)
    except MedbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {done.onnx_path} ({done.size_bytes} bytes, sha256 {done.sha256}, {done.num_parameters} parameters, "
          f"opset {done.opset})")
    print(f"  logits equal onnxruntime's within {done.max_abs_difference:.3g} on {done.parity_images}")
    print(f"  {done.yaml_path}: fill in the TODO fields, then")
    print(f"  medbench submission validate {done.yaml_path} --local")
    return 0


def _validate_attack(path: str, args: argparse.Namespace):
    """Verify one attack file; when it passes, write its record and print what it changed."""
    from ..paths import leaderboard_root
    from ..submission import record_verified_attack, verify_attack_submission

    results = args.results or (Path(args.records) / "results" if args.records else None)
    report = verify_attack_submission(path, registry=args.registry, results=results, data_root=args.data_root,
                                      device=args.device, kind="maintainer" if args.run_by_medbench else "submission")
    print(report.to_text())
    if report.passed:
        done = record_verified_attack(report, args.records or leaderboard_root())
        report.notes.append(done.summary())
        report.notes += [f"stored record left out: {problem}" for problem in done.skipped]
        print("\n".join(f"  {note}" for note in report.notes))
    return report


def _accept(args: argparse.Namespace) -> int:
    from ..submission import accept_submission

    done = accept_submission(args.file, registry=args.registry, results=args.results, site=args.site,
                             quick=args.quick, threats=args.threats, data_root=args.data_root, device=args.device,
                             reference=args.reference)
    r = done.result
    print(f"accepted {r.model_id} ({r.dataset}): entry {done.entry_path}, result {done.result_path}, "
          f"site {done.site_dir}")
    if r.clean:
        print(f"  clean balanced accuracy {r.clean.balanced_accuracy:.4f}")
    for label, adv in r.adversarial.items():
        print(f"  {label}: robust balanced accuracy {adv.robust_balanced_accuracy:.4f}")
    return 0
