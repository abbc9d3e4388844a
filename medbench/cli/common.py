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
    """The current protocol (or the lite track's), or a derived '+custom' one with the --set overrides.

    Each KEY must be a dotted path of the protocol document and each VALUE must have the type of the
    value it replaces (and not be negative where that is a number); raises ``SettingError`` otherwise.
    """
    from ..protocol import LITE_VERSION, load_protocol

    proto = load_protocol(LITE_VERSION) if track == "lite" else load_protocol()
    changes = {}
    for item in settings:
        key, value, current = _parse_setting(item, proto)
        if key not in OPTIONAL_KEYS:
            _check_like(item, value, current)
        changes[key] = value
    return proto.derive(**changes) if changes else proto


def _parse_setting(item: str, proto):
    """``(key, parsed value, current value)`` of one --set item, checked against the protocol's keys."""
    from ..errors import SettingError
    from ..protocol import protocol_file
    from ..safe_yaml import YamlError, load_yaml_text

    where = f"see medbench/protocols/{protocol_file(proto.version)}"
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise SettingError(f"--set {item!r}: expected KEY=VALUE with KEY a dotted path of the protocol (e.g. "
                           "adversarial.subset_size=32, clean.bootstrap_resamples=200, "
                           f"corruptions.include=[pixelate]); {where}.")
    node, done = proto._data, []  # noqa: SLF001 (validating a dotted key against the protocol document)
    for part in key.split("."):
        if key in OPTIONAL_KEYS and len(done) == key.count("."):
            node = None
            break
        if not isinstance(node, dict) or part not in node:
            raise SettingError(_unknown_key(item, key, done, node, where))
        node, done = node[part], [*done, part]
    try:
        value = load_yaml_text(raw, where="the value")
    except YamlError as exc:
        raise SettingError(f"--set {item!r}: {exc} (not valid YAML).") from None
    return key, value, node


def _unknown_key(item: str, key: str, done: list[str], node, where: str) -> str:
    """The message for a --set KEY that the protocol does not have: the closest keys at that level."""
    import difflib

    prefix = ".".join(done)
    if not isinstance(node, dict):
        return f"--set {item!r}: {prefix} is a value, not a section; write --set {prefix}=VALUE ({where})."
    names = [f"{prefix}.{k}" if prefix else str(k) for k in node]
    close = difflib.get_close_matches(key, names, n=3)
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
    level = f"under {prefix}" if prefix else "at the top level"
    return (f"--set {item!r}: the protocol has no key {key!r}.{hint} Keys {level}: {', '.join(names)} "
            f"({where}).")


def _check_like(item: str, value, current) -> None:
    """A --set value must have the protocol value's type (an int where an int is, a number where a float
    is, ...) and, for numbers, not be negative: a typo is an error here, not a traceback later."""
    from ..errors import SettingError

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
        raise SettingError(f"--set {item!r}: this protocol value is {want} (now {current!r}), got {kind(value)} "
                           f"{value!r}.")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
        raise SettingError(f"--set {item!r}: this protocol value is a non-negative {want.split()[-1]} "
                           f"(now {current!r}), got {value!r}.")
