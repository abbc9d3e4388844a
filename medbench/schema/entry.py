"""``ModelEntry``: the typed description of one zoo model (``model_zoo/<dataset>/<ModelId>.yaml``).

One YAML file per model is the only source of truth; this schema validates it and is exported to
``schemas/model_entry.schema.json`` (regenerate with ``python -m medbench.schema.export``).

Example entry (``model_zoo/breastmnist/Baseline_SmallCNN_ERM.yaml``)::

    id: Baseline_SmallCNN_ERM
    dataset: breastmnist
    size: 28
    task: binary-class
    architecture: smallcnn
    architecture_kwargs: {width: 16}
    preprocessing: {mean: [0.5], std: [0.25]}        # applied inside the model; inputs are in [0, 1]
    recipe:
      method: erm                                    # erm | pgd-at | trades | sam | asam | gsam | wsam | auc-m
      epochs: 30
      optimizer: adam
      lr: 0.003
      batch_size: 64
      seed: 0
      extra_data: false
      # adversarial methods (pgd-at, trades) also need: eps: 0.0078431, steps: 4, norm: Linf
    paper: null                                      # required unless the id starts with Baseline_
    license: Apache-2.0
    date_added: 2026-11-22
    description: Small CNN trained with plain ERM on BreastMNIST (reference baseline).
    weights:
      format: safetensors
      sha256: <64 hex digits>
      size_bytes: 123456
      num_parameters: 23858
      sources:                                       # tried in order
        - {kind: hub, repo_id: medbench/zoo, filename: breastmnist/Baseline_SmallCNN_ERM.safetensors,
           revision: <40-hex commit>}
        - {kind: mirror, url: "https://example.org/Baseline_SmallCNN_ERM.safetensors"}
        - {kind: bundled, filename: Baseline_SmallCNN_ERM.safetensors}   # next to the YAML file
    reported: null                                   # numbers the authors claim (never "verified")
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import os
import re
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal, Union
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator

from ..errors import MedbenchError
from .base import StrictInput as Strict  # every model below reads hand-written YAML
from .text import Text

ENTRY_SCHEMA_VERSION = 1

# Author2026Keyword (RobustBench style) or Baseline_<Arch>_<Recipe>.
PAPER_ID_RE = r"^[A-Z][A-Za-z]*(19|20)[0-9]{2}[A-Z][A-Za-z0-9]*$"
BASELINE_ID_RE = r"^Baseline_[A-Z][A-Za-z0-9]*_[A-Z][A-Za-z0-9]*$"
ID_PATTERN = f"({PAPER_ID_RE})|({BASELINE_ID_RE})"
SHA256_RE = r"^[0-9a-f]{64}$"
REVISION_RE = r"^[0-9a-f]{40}$"
REPO_ID_RE = r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$"
LOOPBACK_HOSTS = ("localhost",)
ALLOW_LOOPBACK_ENV = "MEDBENCH_ALLOW_LOOPBACK"  # set only by the test suite (its loopback Hub); never by default

Method = Literal["erm", "pgd-at", "trades", "sam", "asam", "gsam", "wsam", "auc-m"]
ADVERSARIAL_METHODS = ("pgd-at", "trades")
ONNX_ARCHITECTURE = "onnx"  # the architecture of an entry whose weights file is an ONNX graph
Key = Text(64)
Scalar = Union[bool, int, float, Text(200)]


class EntryError(MedbenchError, ValueError):
    """A model entry (YAML file or dict) that does not satisfy the schema."""


# ----------------------------------------------------------------------------- weights sources

class HubSource(Strict):
    """A file in a Hugging Face Hub repository, pinned to a full commit hash."""

    kind: Literal["hub"] = "hub"
    repo_id: Text(200) = Field(pattern=REPO_ID_RE, description="owner/name of the Hub model repository")
    filename: Text(300) = Field(description="path of the file inside the repository")
    revision: Text(40) = Field(description="full 40-hex commit hash (branches and tags move; commits do not)",
                          json_schema_extra={"pattern": REVISION_RE})

    @field_validator("revision")
    @classmethod
    def _full_commit(cls, v: str) -> str:
        if not re.fullmatch(REVISION_RE, v):
            raise ValueError(f"revision must be a full 40-character lowercase hex commit hash, got {v!r} "
                             "(branch names, tags and short hashes are not pinned); copy it from the Hub's commit page")
        return v

    @field_validator("filename")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        return _relative_path(v)

    def describe(self) -> str:
        return f"hub {self.repo_id}/{self.filename}@{self.revision[:12]}"


class MirrorSource(Strict):
    """A plain HTTPS URL; loopback hosts (plain http too) only when ``MEDBENCH_ALLOW_LOOPBACK=1`` (tests)."""

    kind: Literal["mirror"] = "mirror"
    url: Text(1000) = Field(description="https:// URL of the safetensors file")

    @field_validator("url")
    @classmethod
    def _https(cls, v: str) -> str:
        parts = urlsplit(v)
        if not parts.hostname:
            raise ValueError(f"url must be an absolute https:// URL with a host, got {v!r}")
        local = is_loopback_host(parts.hostname)
        if local and not loopback_allowed():
            raise ValueError(f"url must point to a public https:// host, got the loopback address {parts.hostname!r} "
                             f"(allowed only in medbench's own tests, {ALLOW_LOOPBACK_ENV}=1)")
        if parts.scheme == "https" or (parts.scheme == "http" and local):
            return v
        raise ValueError(f"url must use https:// (http is accepted only for loopback hosts in tests), got {v!r}")

    def describe(self) -> str:
        return f"mirror {self.url}"


class BundledSource(Strict):
    """A file shipped inside the package, next to the entry's YAML file."""

    kind: Literal["bundled"] = "bundled"
    filename: Text(300) = Field(description="file name relative to the entry's folder (model_zoo/<dataset>/)")

    @field_validator("filename")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        return _relative_path(v)

    def describe(self) -> str:
        return f"bundled {self.filename}"


Source = Annotated[Union[HubSource, MirrorSource, BundledSource], Field(discriminator="kind")]


class Weights(Strict):
    """The weights file, pinned by sha256 and size, with sources tried in order: safetensors for a registered
    architecture, or (``format: onnx``, ``architecture: onnx``) a whole ONNX graph, converted on load."""

    format: Literal["safetensors", "onnx"] = Field("safetensors", description=(
        "safetensors (weights of a registered architecture) or onnx (the whole model as an ONNX graph; "
        "the entry's architecture is then `onnx`)"))
    sha256: Text(64) = Field(pattern=SHA256_RE, description="sha256 of the file, 64 lowercase hex digits")
    size_bytes: int = Field(gt=0, description="size of the file in bytes")
    num_parameters: int = Field(gt=0, description="number of parameters of the built model (checked on load); "
                                "onnx: floating-point initializer elements of the graph")
    sources: list[Source] = Field(min_length=1, max_length=10, description="where to get the file, tried in order")


# ----------------------------------------------------------------------------- metadata

class Preprocessing(Strict):
    """Normalisation constants, applied inside the model (its first layer); inputs stay in [0, 1]."""

    mean: list[float] = Field(min_length=1, max_length=16, description="one value, or one per channel")
    std: list[float] = Field(min_length=1, max_length=16, description="one positive value, or one per channel")

    @field_validator("std")
    @classmethod
    def _positive(cls, v: list[float]) -> list[float]:
        if any(s <= 0 for s in v):
            raise ValueError(f"every std must be positive, got {v}")
        return v

    @model_validator(mode="after")
    def _same_length(self) -> "Preprocessing":
        if len(self.mean) != len(self.std) and 1 not in (len(self.mean), len(self.std)):
            raise ValueError(f"mean ({len(self.mean)} values) and std ({len(self.std)} values) must have the same length")
        return self


class Recipe(Strict):
    """How the weights were trained (enough to reproduce the run)."""

    method: Method
    epochs: int = Field(ge=1)
    optimizer: Text(50) = Field(description="e.g. adam, sgd")
    lr: float = Field(gt=0)
    batch_size: int = Field(ge=1)
    seed: int | None = None
    extra_data: bool = Field(False, description="trained on data beyond the dataset's own train split")
    weight_decay: float | None = Field(None, ge=0)
    schedule: Text(300) | None = Field(None, description="learning-rate schedule, e.g. 'x0.1 at 50% and 75%'")
    eps: float | None = Field(None, gt=0, le=1, description="adversarial-training radius, in [0, 1] pixel units")
    norm: Literal["Linf", "L2"] | None = None
    steps: int | None = Field(None, ge=1, description="attack steps per training example")
    hyperparameters: dict[Key, Scalar] = Field(default_factory=dict, max_length=50,
                                               description="method-specific settings, e.g. {beta: 6.0} for TRADES")
    selection: Text(300) | None = Field(None, description="how the checkpoint was chosen, e.g. 'best val AUC'")

    @model_validator(mode="after")
    def _adversarial_fields(self) -> "Recipe":
        if self.method in ADVERSARIAL_METHODS:
            missing = [f for f in ("eps", "steps", "norm") if getattr(self, f) is None]
            if missing:
                raise ValueError(f"method {self.method!r} is adversarial training: recipe.{', recipe.'.join(missing)} "
                                 "must be given")
        return self


class Paper(Strict):
    title: Text(300)
    url: Text(1000) = Field(pattern=r"^https?://", description="link to the paper (https)")
    authors: list[Text(200)] = Field(min_length=1, max_length=100)
    venue: Text(200)
    year: int = Field(ge=1990, le=2100)

    @field_validator("year")
    @classmethod
    def _not_future(cls, v: int) -> int:
        if v > latest_date().year:
            raise ValueError(f"year {v} is in the future; give the year the paper appeared (preprints: its year)")
        return v


class Reported(Strict):
    """Numbers the authors claim. Shown as 'reported', never in a verified column."""

    source: Text(500) = Field(description="where the claim comes from (paper table, README)")
    clean_accuracy: float | None = Field(None, ge=0, le=1)
    clean_balanced_accuracy: float | None = Field(None, ge=0, le=1)
    clean_auc: float | None = Field(None, ge=0, le=1)
    robust_accuracy: float | None = Field(None, ge=0, le=1)
    robust_balanced_accuracy: float | None = Field(None, ge=0, le=1)
    eps: float | None = Field(None, ge=0, le=1)
    norm: Literal["Linf", "L2"] | None = None


class ModelEntry(Strict):
    """One zoo model: identity, dataset, architecture, preprocessing, recipe, provenance and weights."""

    schema_version: Literal[1] = ENTRY_SCHEMA_VERSION
    id: str = Field(description="Author2026Keyword (papers) or Baseline_<Arch>_<Recipe> (reference baselines)",
                    json_schema_extra={"pattern": ID_PATTERN})
    dataset: str = Field(description="MedMNIST flag, e.g. breastmnist")
    size: int = Field(28, description="image size the model takes (28, 64, 128, 224)")
    task: str = Field(description="medmnist task of the dataset, e.g. binary-class")
    architecture: Text(64) = Field(description="name registered with medbench.models")
    architecture_kwargs: dict[Key, Scalar | list[Scalar]] = Field(default_factory=dict, max_length=20)
    preprocessing: Preprocessing
    recipe: Recipe
    paper: Paper | None = None
    license: Text(100) = Field(description="licence of the weights, e.g. Apache-2.0, CC-BY-4.0")
    date_added: _dt.date
    description: Text(5000, multiline=True) | None = None
    tags: list[Text(40)] = Field(default_factory=list, max_length=20)
    weights: Weights
    reported: Reported | None = None

    @field_validator("id")
    @classmethod
    def _id_format(cls, v: str) -> str:
        if len(v) > 64:
            raise ValueError(f"id has {len(v)} characters; at most 64 are allowed")
        if not (re.fullmatch(PAPER_ID_RE, v) or re.fullmatch(BASELINE_ID_RE, v)):
            raise ValueError(f"id must look like Author2026Keyword (e.g. Smith2025Trades) or "
                             f"Baseline_<Arch>_<Recipe> (e.g. Baseline_ResNet18_ERM), got {v!r}")
        return v

    @field_validator("date_added", mode="before")
    @classmethod
    def _iso_date(cls, v: Any) -> Any:
        # YAML reads 2026-11-22 as a date and '2026-11-22' as a string; both mean the same day.
        if isinstance(v, str) and re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", v):
            try:
                return _dt.date.fromisoformat(v)
            except ValueError:
                raise ValueError(f"date_added {v!r} is not a calendar date (YYYY-MM-DD)") from None
        return v

    @field_validator("date_added")
    @classmethod
    def _not_future(cls, v: _dt.date) -> _dt.date:
        if v > latest_date():
            raise ValueError(f"date_added {v.isoformat()} is in the future; give the day the entry was written")
        return v

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, v: str) -> str:
        from ..data import DATASETS

        if v not in DATASETS:
            raise ValueError(f"unknown dataset {v!r}; use one of {', '.join(DATASETS)}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "ModelEntry":
        from ..data import DATASETS

        spec = DATASETS[self.dataset]
        if self.size not in spec.sizes:
            raise ValueError(f"size {self.size} is not available for {self.dataset} (sizes: {list(spec.sizes)})")
        if self.task != spec.task:
            raise ValueError(f"task {self.task!r} does not match {self.dataset}'s task {spec.task!r}")
        for name in ("mean", "std"):
            n = len(getattr(self.preprocessing, name))
            if n not in (1, spec.n_channels):
                raise ValueError(f"preprocessing.{name} has {n} values; {self.dataset} has {spec.n_channels} "
                                 "channel(s): give one value or one per channel")
        self._check_onnx()
        if self.paper is None and not self.is_baseline:
            raise ValueError(f"paper is required for non-baseline entries ({self.id!r}); "
                             "only Baseline_<Arch>_<Recipe> ids may omit it")
        return self

    def _check_onnx(self) -> None:
        onnx_file, onnx_arch = self.weights.format == "onnx", self.architecture == ONNX_ARCHITECTURE
        if onnx_file and not onnx_arch:
            raise ValueError(f"weights.format onnx needs architecture: {ONNX_ARCHITECTURE} (the graph is the "
                             f"architecture), got {self.architecture!r}")
        if onnx_arch and not onnx_file:
            raise ValueError(f"architecture {ONNX_ARCHITECTURE!r} needs weights.format: onnx (an .onnx file); "
                             "safetensors weights need a registered architecture")
        if onnx_arch and self.architecture_kwargs:
            raise ValueError("architecture_kwargs must be empty for an ONNX model (the graph fixes the architecture), "
                             f"got {sorted(self.architecture_kwargs)}")

    @property
    def is_onnx(self) -> bool:
        """Whether the weights file is a whole ONNX graph (converted with onnx2torch on load)."""
        return self.weights.format == "onnx"

    @property
    def is_baseline(self) -> bool:
        return self.id.startswith("Baseline_")


# ----------------------------------------------------------------------------- reading

_UNION_TAGS = {"bool", "int", "float", "str"}  # pydantic's names for the members of a scalar union
_TYPE_WORDS = {"bool_type": "true or false", "int_type": "a whole number", "float_type": "a number",
               "string_type": "text", "list_type": "a list", "dict_type": "a mapping",
               "date_type": "a date (YYYY-MM-DD)"}


def format_validation_error(exc: ValidationError, where: str) -> str:
    """One line per bad field, naming the field (dotted path), what is wrong and how to fix it."""
    by_field: dict[str, list[dict]] = {}
    for err in exc.errors():
        parts = [str(p) for p in err["loc"] if not str(p).startswith(("function-after", "list[", "union["))]
        while parts and parts[-1] in _UNION_TAGS:  # a scalar union reports once per member
            parts.pop()
        by_field.setdefault(".".join(parts) or "(entry)", []).append(err)
    lines = [f"  field '{field}': {_describe_errors(errs)}" for field, errs in by_field.items()]
    return f"{where} is not a valid model entry:\n" + "\n".join(lines)


def _describe_errors(errs: list[dict]) -> str:
    specific = [e for e in errs if e["type"] not in _TYPE_WORDS]
    if specific:
        return "; ".join(dict.fromkeys(_describe_error(e) for e in specific))
    wanted = " or ".join(dict.fromkeys(_TYPE_WORDS[e["type"]] for e in errs))
    return f"must be {wanted}, got {_got(errs[0].get('input'))}"


def _describe_error(err: dict) -> str:
    if err["type"] == "missing":
        return "required field is missing"
    if err["type"] == "extra_forbidden":
        return "unknown field (not part of the schema; check the spelling, see schemas/model_entry.schema.json)"
    if err["type"] == "finite_number":
        return f"must be a finite number, got {err.get('input')!r} (NaN and infinity are refused)"
    return err["msg"].removeprefix("Value error, ")


def _got(value: Any) -> str:
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean; booleans are not numbers)"
    if isinstance(value, str):
        hint = ("; write a plain number without quotes (YAML reads exponent forms only with a dot, e.g. 1.0e-3)"
                if re.fullmatch(r"[-+0-9.eE]+", value.strip()) else "")
        return f"the text {value[:40]!r}{hint}"
    if isinstance(value, float) and value.is_integer():
        return f"{value!r} (write a whole number without decimals)"
    if isinstance(value, (dict, list)):
        return f"a {'mapping' if isinstance(value, dict) else 'list'}"
    return f"{str(value)[:40]!r} ({type(value).__name__})"


def parse_entry(data: Any, where: str = "model entry") -> ModelEntry:
    """Validate a mapping as a :class:`ModelEntry`; raise :class:`EntryError` naming each bad field."""
    if not isinstance(data, dict):
        raise EntryError(f"{where} must be a YAML mapping of fields, got {type(data).__name__}")
    try:
        return ModelEntry.model_validate(data)
    except ValidationError as exc:
        raise EntryError(format_validation_error(exc, where)) from None


def read_entry(path: str | Path) -> ModelEntry:
    """Read and validate one ``<ModelId>.yaml`` file (duplicate keys and deep nesting are refused)."""
    from ..safe_yaml import YamlError, load_yaml_text

    path = Path(path)
    try:
        data = load_yaml_text(path.read_text(encoding="utf-8"), where=str(path))
    except YamlError as exc:
        raise EntryError(f"{exc} (not valid YAML for a model entry)") from None
    return parse_entry(data, str(path))


# ----------------------------------------------------------------------------- helpers

def latest_date() -> _dt.date:
    """The latest acceptable date: tomorrow in UTC (an author east of UTC may already be there)."""
    return _dt.datetime.now(_dt.timezone.utc).date() + _dt.timedelta(days=1)


def _relative_path(v: str) -> str:
    p = PurePosixPath(v)
    if not v or "\\" in v or p.is_absolute() or ".." in p.parts or v.startswith("~"):
        raise ValueError(f"must be a relative path inside the folder without '..', '\\' or a leading '/', got {v!r}")
    return v


def loopback_allowed() -> bool:
    """Whether loopback URLs are accepted (only the test suite sets ``MEDBENCH_ALLOW_LOOPBACK=1``)."""
    return os.environ.get(ALLOW_LOOPBACK_ENV) == "1"


def is_loopback_host(host: str) -> bool:
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
