"""A submission file: a zoo :class:`ModelEntry` plus the numbers its authors claim (``claimed``).

``submissions/<ModelId>.yaml`` holds every field of a ``model_zoo`` entry and one more block::

    claimed:
      clean_balanced_accuracy: 0.812   # full test split, fractions in [0, 1]
      clean_accuracy: 0.853
      clean_auc: 0.884                 # optional
      robust_balanced_accuracy: 0.611  # optional; needs `threat`
      threat: Linf-2/255               # a threat label of the protocol (Linf-2/255, Linf-4/255, L2-0.25)

Unknown fields are rejected everywhere. On acceptance the ``claimed`` block is dropped: the entry
joins the zoo and the harness measures the numbers itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, model_validator

from ..errors import MedbenchError
from ..safe_yaml import YamlError, load_yaml_text
from ..schema.base import StrictInput as Strict
from ..schema.entry import ModelEntry, format_validation_error
from ..schema.text import Text

MAX_FILE_BYTES = 64 * 1024  # a submission YAML larger than this is not a metadata file
SUBMISSIONS_DIR = "submissions"


class SubmissionError(MedbenchError, ValueError):
    """A submission file that cannot be read or does not satisfy the schema."""


class Claimed(Strict):
    """Numbers the authors claim; ``medbench submission validate --reproduce`` re-measures them."""

    clean_balanced_accuracy: float = Field(ge=0, le=1, description="balanced accuracy on the full test split")
    clean_accuracy: float = Field(ge=0, le=1, description="accuracy on the full test split")
    clean_auc: float | None = Field(None, ge=0, le=1, description="AUC on the full test split")
    robust_balanced_accuracy: float | None = Field(None, ge=0, le=1,
                                                   description="robust balanced accuracy under `threat` (AutoAttack)")
    threat: Text(40) | None = Field(None, description="protocol threat label of the robust claim, e.g. Linf-2/255")

    @model_validator(mode="after")
    def _threat_with_robust(self) -> "Claimed":
        if (self.robust_balanced_accuracy is None) != (self.threat is None):
            raise ValueError("claimed.robust_balanced_accuracy and claimed.threat go together: give both "
                             "(e.g. threat: Linf-2/255) or neither")
        return self


class Submission(ModelEntry):
    """A :class:`ModelEntry` plus the authors' ``claimed`` numbers."""

    claimed: Claimed

    def to_entry(self) -> ModelEntry:
        """The zoo entry (everything but ``claimed``)."""
        return ModelEntry.model_validate(self.model_dump(exclude={"claimed"}))


def _in_folder(path: Path, folder: str) -> bool:
    """Whether ``path``'s parent folders end with ``folder`` (e.g. ``submissions/attacks``)."""
    parts = Path(folder).parts
    return path.absolute().parent.parts[-len(parts):] == parts


def display_path(path: str | Path, folder: str = SUBMISSIONS_DIR) -> str:
    """How a report names the file: ``<folder>/<name>``, e.g. ``submissions/<name>`` (never an absolute path)."""
    path = Path(path)
    return f"{folder}/{path.name}" if _in_folder(path, folder) else path.name


def check_location(path: str | Path, folder: str = SUBMISSIONS_DIR) -> None:
    """Refuse symlinks and files that resolve outside a ``<folder>/`` folder (they could read any file)."""
    path = Path(path)
    name = display_path(path, folder)
    parent = path.absolute().parent
    if path.is_symlink() or parent.is_symlink():
        raise SubmissionError(f"{name} is a symbolic link; a submission must be a regular file. "
                              f"Fix: commit the YAML file itself in {folder}/.")
    if not path.is_file():
        what = "a folder" if path.is_dir() else "missing"
        raise SubmissionError(f"{name} is {what}, not a file. "
                              f"Fix: give the path of a {folder}/<name>.yaml file.")
    if not _in_folder(path, folder) or path.resolve().parent != parent.resolve():
        raise SubmissionError(f"{name} is outside {folder}/; only files directly in the repository's "
                              f"{folder}/ folder are validated. "
                              f"Fix: move it to {folder}/{path.name}.")


def load_yaml(path: str | Path, folder: str = SUBMISSIONS_DIR, *, local: bool = False) -> Any:
    """Read a submission file as plain data (location checked, size-limited, safe YAML without aliases).

    ``folder``: where such files live (``submissions``, or ``submissions/attacks`` for attack files).
    ``local``: the author's own check before uploading; the file may lie in any folder (still no symlink).
    Raise :class:`SubmissionError`; messages name the file as ``<folder>/<name>`` and never quote its content.
    """
    path = Path(path)
    if local:
        if path.is_symlink() or not path.is_file():
            raise SubmissionError(f"{path.name} is not a regular file. Fix: give the path of the YAML file "
                                  "`medbench submission prepare` wrote.")
    else:
        check_location(path, folder)
    name = display_path(path, folder)
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise SubmissionError(f"{name} is {size} bytes; a submission file may have at most {MAX_FILE_BYTES} bytes. "
                              "Fix: shorten the description; weights go on the Hugging Face Hub, not in the file.")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SubmissionError(f"{name} is not UTF-8 text (invalid byte at position {exc.start}). "
                              "Fix: save the file as UTF-8.") from None
    try:
        return load_yaml_text(text, where=name, aliases=False)
    except YamlError as exc:
        raise SubmissionError(f"{exc} (invalid YAML). Fix: correct the YAML at that line "
                              "(start from submissions/TEMPLATE.yaml).") from None


def parse_submission(data: Any, where: str = "submission") -> Submission:
    """Validate plain data as a :class:`Submission`; the error names every bad field."""
    if not isinstance(data, dict):
        raise SubmissionError(f"{where} must be a YAML mapping of fields, got {type(data).__name__}. "
                              "Fix: start from submissions/TEMPLATE.yaml.")
    try:
        return Submission.model_validate(data)
    except ValidationError as exc:
        text = format_validation_error(exc, where).replace("is not a valid model entry", "is not a valid submission")
        raise SubmissionError(text + "\n  (see submissions/TEMPLATE.yaml for every field)") from None


def read_submission(path: str | Path) -> Submission:
    """Read and validate one submission file."""
    return parse_submission(load_yaml(path), display_path(path))
