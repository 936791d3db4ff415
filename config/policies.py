"""Load and validate the policy files in `config/policies/` and the decline table.

Each file is `<name>-v<version>.toml`; several versions of one policy live side by side so
running cases keep theirs while new cases take the newest.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import ValidationError

from config.errors import explain
from workflows.notice_windows import PreDunning
from workflows.policy import DeclineTable, Policy
from workflows.segments import SegmentRules


class PolicyError(ValueError):
    """A policy file is missing or invalid; the message names the file and the field."""


def _read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise PolicyError(f"{path}: file not found") from exc
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{path}: not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{path}: not valid TOML: {exc}") from exc


def _explain(path: Path, exc: ValidationError) -> PolicyError:
    return PolicyError(f"{path}: {explain(exc)}")


def load_declines(path: Path) -> DeclineTable:
    """The decline table, validated."""
    try:
        return DeclineTable.model_validate(_read_toml(path))
    except ValidationError as exc:
        raise _explain(path, exc) from exc


def load_policy_file(path: Path, declines: DeclineTable) -> Policy:
    """One policy file, validated, with the decline table folded in."""
    data = _read_toml(path)
    data.setdefault("declines", declines.model_dump())
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        raise _explain(path, exc) from exc
    expected = f"{policy.name}-v{policy.version}.toml"
    if path.name != expected:
        raise PolicyError(f"{path}: a file holding {policy.label} must be named {expected}")
    return policy


def load_policies(policies_dir: Path, declines_file: Path) -> list[Policy]:
    """Every policy in the folder; the first bad file stops the load with its reason."""
    declines = load_declines(declines_file)
    files = sorted(policies_dir.glob("*.toml"))
    if not files:
        raise PolicyError(f"{policies_dir}: no policy files (*.toml)")
    return [load_policy_file(path, declines) for path in files]


def find_policy(policies: list[Policy], name: str, version: int | None = None) -> Policy:
    """The named policy at `version`, or its newest version when none is given."""
    matching = [p for p in policies if p.name == name]
    if not matching:
        known = ", ".join(sorted({p.name for p in policies}))
        raise PolicyError(f"unknown policy {name!r} (known: {known})")
    if version is None:
        return max(matching, key=lambda p: p.version)
    for policy in matching:
        if policy.version == version:
            return policy
    versions = ", ".join(str(p.version) for p in sorted(matching, key=lambda p: p.version))
    raise PolicyError(f"policy {name!r} has no version {version} (has: {versions})")


def load_segments(path: Path, policies: list[Policy]) -> SegmentRules:
    """The segment rules, validated, every policy they name known."""
    try:
        rules = SegmentRules.model_validate(_read_toml(path))
    except ValidationError as exc:
        raise _explain(path, exc) from exc
    known = {p.name for p in policies}
    for segment in rules.segments:
        for name in segment.policies:
            if name not in known:
                raise PolicyError(f"{path}: segment {segment.name} names unknown policy {name!r}")
    return rules


def load_pre_dunning(path: Path) -> PreDunning:
    """The `[pre_dunning]` table of config/pre-dunning.toml, validated (every field has a
    default: an empty table means 30- and 7-day card notices and 14-day renewal notices)."""
    data = _read_toml(path)
    try:
        return PreDunning.model_validate(data.get("pre_dunning", {}))
    except ValidationError as exc:
        raise _explain(path, exc) from exc
