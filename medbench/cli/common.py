"""Arguments and formatting shared by several commands."""

from __future__ import annotations

import argparse
import os


def absolute_folder(text: str) -> str:
    """An argparse type: a folder argument made absolute as it is read (later chdirs keep it)."""
    return os.path.abspath(os.path.expanduser(text))


def add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", metavar="DIR", default=None, type=absolute_folder,
                   help="folder with the MedMNIST .npz files (default: $MEDBENCH_DATA, else ~/.medmnist)")


def add_device_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda:0 (default: cuda if available)")
    p.add_argument("--batch-size", type=int, default=None, help="inference batch size (default: automatic)")


def fmt(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def fmt_ci(value: float | None, ci) -> str:
    if value is None:
        return "-"
    if ci is None or ci.low is None:
        return fmt(value)
    return f"{value:.3f} [{ci.low:.3f}, {ci.high:.3f}]"


# Threat names the CLI accepts (those of medbench.evaluate.THREAT_RUNNERS; kept here so that parsing
# --threats does not import torch) and common misspellings, mapped to what the user most likely meant.
THREATS = ("clean", "corruptions", "Linf", "L2", "curves")
THREAT_ALIASES = {
    "corruption": "corruptions", "corrupted": "corruptions", "medmnist-c": "corruptions", "c": "corruptions",
    "linfinity": "Linf", "l-inf": "Linf", "l_inf": "Linf", "linf-inf": "Linf", "inf": "Linf", "l-infinity": "Linf",
    "l_2": "L2", "l-2": "L2", "curve": "curves", "noise": "curves", "fgsm": "curves", "sweep": "curves",
    "autoattack": "Linf,L2", "adversarial": "Linf,L2", "aa": "Linf,L2",
}


class ThreatsError(ValueError):
    """A --threats value the harness does not know; the message says what to write instead."""


def parse_threats(text: str, budgets: dict[str, list[str]] | None = None) -> list[str]:
    """Validate a comma-separated --threats value and return its canonical names ('all' kept as is).

    ``budgets`` maps a norm to the protocol's threat labels (e.g. Linf -> Linf-2/255, Linf-4/255), used
    to explain that budgets are fixed by the protocol when someone writes ``Linf-8/255``.
    """
    import difflib
    import re

    choose = ("choose from clean, corruptions, Linf, L2, curves, or all (comma-separated, e.g. "
              "--threats clean,Linf,corruptions)")
    items = [t.strip() for t in str(text).split(",")]
    if not any(items):
        raise ThreatsError(f"--threats is empty; {choose}.")
    canon = {t.lower(): t for t in THREATS}
    out: list[str] = []
    for item in items:
        if not item:
            continue
        key = item.lower()
        if key == "all":
            out.append("all")
            continue
        if key in canon:
            out.append(canon[key])
            continue
        budget = re.match(r"^(l-?inf(?:inity)?|l_?inf|l-?2|l_2)\s*[-_:@=]?\s*(.+)$", key)
        if budget:
            norm = "L2" if "2" in budget.group(1) else "Linf"
            fixed = ", ".join((budgets or {}).get(norm, [])) or "set in the protocol"
            sweep = "".join(f", {x}" for x in (budgets or {}).get("curves", []))
            raise ThreatsError(
                f"--threats takes threat families, not budgets: {item!r} is not a threat. {norm!r} runs AutoAttack "
                f"at the protocol's fixed budgets ({fixed}), so results stay comparable; epsilon sweeps (APGD-CE "
                f"and FGSM{sweep}) are the 'curves' threat. Fix: --threats clean,{norm} (or add curves).")
        guess = THREAT_ALIASES.get(key) or next(iter(difflib.get_close_matches(
            key, [*canon, "all"], n=1, cutoff=0.6)), None)
        guess = canon.get(guess, guess) if guess else None
        hint = f" Did you mean {guess!r}?" if guess else ""
        raise ThreatsError(f"--threats: unknown threat {item!r}.{hint} {choose[0].upper()}{choose[1:]}.")
    return list(dict.fromkeys(out))


# protocol keys that --set may add although the protocol file leaves them out
OPTIONAL_KEYS = {"corruptions.include": "restrict the corruption suite, e.g. corruptions.include=[pixelate]"}


def protocol_from_settings(settings: list[str], track: str = "full"):
    """The current protocol (or the lite track's), or a derived '+custom' one with the --set overrides
    (keys must exist)."""
    from ..safe_yaml import YamlError, load_yaml_text

    from ..errors import MedbenchError
    from ..protocol import LITE_VERSION, load_protocol, protocol_file

    proto = load_protocol(LITE_VERSION) if track == "lite" else load_protocol()
    changes = {}
    for item in settings:
        key, sep, raw = item.partition("=")
        node = proto._data  # noqa: SLF001 (validating a dotted key against the protocol document)
        parts = key.split(".")
        for i, part in enumerate(parts):
            if key in OPTIONAL_KEYS and i == len(parts) - 1:
                break
            if not sep or not isinstance(node, dict) or part not in node:
                raise MedbenchError(f"--set {item!r}: expected KEY=VALUE with KEY a dotted path of the protocol "
                                    "(e.g. adversarial.subset_size=32, clean.bootstrap_resamples=200, "
                                    f"corruptions.include=[pixelate]); see medbench/protocols/{protocol_file(proto.version)}.")
            node = node[part]
        try:
            value = load_yaml_text(raw, where="the value")
        except YamlError as exc:
            raise MedbenchError(f"--set {item!r}: {exc} (not valid YAML).") from None
        if key not in OPTIONAL_KEYS:
            _check_like(item, value, node)
        changes[key] = value
    return proto.derive(**changes) if changes else proto


def _check_like(item: str, value, current) -> None:
    """A --set value must have the protocol value's type (an int where an int is, a number where a float
    is, ...) and, for numbers, not be negative: a typo is an error here, not a traceback later."""
    from ..errors import MedbenchError

    def kind(v) -> str:
        if isinstance(v, bool):
            return "true or false"
        if isinstance(v, int):
            return "an integer"
        if isinstance(v, float):
            return "a number"
        return {str: "a string", list: "a list", dict: "a mapping"}.get(type(v), type(v).__name__)

    want = kind(current)
    ok = kind(value) == want or (want == "a number" and kind(value) == "an integer")
    if not ok:
        raise MedbenchError(f"--set {item!r}: this protocol value is {want} (now {current!r}), got {kind(value)} "
                            f"{value!r}.")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
        raise MedbenchError(f"--set {item!r}: must not be negative (now {current!r}).")
