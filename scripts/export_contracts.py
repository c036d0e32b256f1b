"""Write the contract catalogue to contracts/: JSON Schemas, asyncapi.json and TOPICS.md.

python scripts/export_contracts.py            # (re)write the files
python scripts/export_contracts.py --check    # exit 1 if a file is out of date or a change breaks the last release
python scripts/export_contracts.py --release  # make the current schemas the released baseline of CONTRACTS_VERSION

The released baseline (contracts/released/<version>/<Type>.v<N>.json) is what producers
and consumers outside this repository were promised. --check compares the current models
with it, so a breaking change fails on any checkout, committed or not. To make one on
purpose, bump CONTRACTS_VERSION in contracts/catalogue.py and run --release: the baseline
moves to the new version (the old one stays in git history).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from contracts.catalogue import CONTRACTS_VERSION, message_schemas, render_json, rendered_files
from contracts.compatibility import incompatibilities, parse_version

CONTRACTS_DIR = Path(__file__).resolve().parents[1] / "contracts"
SCHEMAS = "schemas"
RELEASED = "released"


def differences(directory: Path = CONTRACTS_DIR) -> list[str]:
    """Generated files that are missing, differ from the models, or no longer correspond to a model."""
    expected = rendered_files()
    problems = []
    for name, text in expected.items():
        path = directory / name
        if not path.is_file():
            problems.append(f"{name} (missing)")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{name} (differs)")
    for path in sorted((directory / SCHEMAS).glob("*.json")):
        name = path.relative_to(directory).as_posix()
        if name not in expected:
            problems.append(f"{name} (extra)")
    return problems


def export(directory: Path = CONTRACTS_DIR) -> list[str]:
    """Bring the files up to date; returns what changed."""
    expected = rendered_files()
    changed = []
    for name, text in expected.items():
        path = directory / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            changed.append(f"{name} (written)")
    for path in sorted((directory / SCHEMAS).glob("*.json")):
        name = path.relative_to(directory).as_posix()
        if name not in expected:
            path.unlink()
            changed.append(f"{name} (removed)")
    return changed


# --- the released baseline -------------------------------------------------------------------


def released_versions(directory: Path = CONTRACTS_DIR) -> list[str]:
    """Versions with a released baseline under ``released/``, oldest first."""
    root = directory / RELEASED
    names = [p.name for p in root.iterdir() if p.is_dir()] if root.is_dir() else []
    return sorted(names, key=parse_version)


def released_schemas(directory: Path = CONTRACTS_DIR) -> tuple[str, dict[str, dict[str, Any]]] | None:
    """The latest release's version and schemas by ``Type.vN``; None before the first release."""
    versions = released_versions(directory)
    if not versions:
        return None
    folder = directory / RELEASED / versions[-1]
    schemas = {path.stem: json.loads(path.read_text(encoding="utf-8")) for path in sorted(folder.glob("*.json"))}
    return versions[-1], schemas


def compatibility_problems(directory: Path = CONTRACTS_DIR) -> list[str]:
    """Why the current models break the latest release (empty: they do not), or why there is no baseline."""
    baseline = released_schemas(directory)
    if baseline is None:
        return [f"no released baseline in {RELEASED}/: run --release"]
    version, schemas = baseline
    if not schemas:
        return [f"{RELEASED}/{version}/ holds no schema"]
    problems = []
    current = message_schemas()
    if parse_version(CONTRACTS_VERSION) < parse_version(version):
        problems.append(f"CONTRACTS_VERSION {CONTRACTS_VERSION} is older than the latest release {version}")
    elif version == CONTRACTS_VERSION and (changed := _changed_since(schemas, current)):
        # The wheel tradeguard-contracts carries this version: one number, one set of schemas.
        problems.append(
            f"the schemas changed since release {version} ({', '.join(changed)}) but CONTRACTS_VERSION did not: "
            "raise it (minor for an addition, major for a break) and run --release"
        )
    return problems + [f"{version} -> current: {p}" for p in incompatibilities(schemas, current)]


def _changed_since(released: dict[str, dict[str, Any]], current: dict[str, dict[str, Any]]) -> list[str]:
    """The message schemas added, removed or changed since a release, by ``Type.vN``."""
    names = sorted(set(released) | set(current))
    return [name for name in names if released.get(name) != current.get(name)]


def release(directory: Path = CONTRACTS_DIR) -> list[str]:
    """Make the current schemas the baseline of ``CONTRACTS_VERSION``; older baselines are removed.

    Refuses (ValueError) to rewrite a released version with different schemas, or to go back.
    """
    expected = {f"{name}.json": render_json(schema) for name, schema in message_schemas().items()}
    versions = released_versions(directory)
    if versions and parse_version(CONTRACTS_VERSION) < parse_version(versions[-1]):
        msg = f"CONTRACTS_VERSION {CONTRACTS_VERSION} is older than the latest release {versions[-1]}"
        raise ValueError(msg)
    target = directory / RELEASED / CONTRACTS_VERSION
    if target.is_dir():
        present = {p.name: p.read_text(encoding="utf-8") for p in sorted(target.glob("*.json"))}
        if present != expected:
            msg = (
                f"{RELEASED}/{CONTRACTS_VERSION} is already released with other schemas; "
                "bump CONTRACTS_VERSION in contracts/catalogue.py"
            )
            raise ValueError(msg)
        return []
    changed = []
    target.mkdir(parents=True)
    for name, text in expected.items():
        (target / name).write_text(text, encoding="utf-8")
    changed.append(f"{RELEASED}/{CONTRACTS_VERSION}/ ({len(expected)} schemas written)")
    for version in versions:
        shutil.rmtree(directory / RELEASED / version)
        changed.append(f"{RELEASED}/{version}/ (removed: superseded)")
    return changed


def _check(where: Path) -> int:
    problems = differences()
    for problem in problems:
        print(f"{where}/{problem}", file=sys.stderr)
    if problems:
        print("contracts are out of date: run `make contracts` (scripts/export_contracts.py)", file=sys.stderr)
    breaking = compatibility_problems()
    for problem in breaking:
        print(f"breaking: {problem}", file=sys.stderr)
    if breaking:
        print(
            "a released contract would break: add a new message version instead, "
            "or bump CONTRACTS_VERSION and run --release",
            file=sys.stderr,
        )
    if problems or breaking:
        return 1
    print(f"{len(rendered_files())} contract files up to date, compatible with the latest release")
    return 0


def _release(where: Path) -> int:
    try:
        changed = release()
    except ValueError as error:
        print(error, file=sys.stderr)
        return 1
    for change in changed:
        print(f"{where}/{change}")
    print(f"released {CONTRACTS_VERSION}" if changed else f"{CONTRACTS_VERSION} already released, unchanged")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="write nothing; exit 1 if out of date or incompatible")
    mode.add_argument("--release", action="store_true", help=f"release the current schemas as {CONTRACTS_VERSION}")
    args = parser.parse_args(argv)
    where = CONTRACTS_DIR.relative_to(CONTRACTS_DIR.parent)
    if args.check:
        return _check(where)
    if args.release:
        return _release(where)
    changed = export()
    for change in changed:
        print(f"{where}/{change}")
    print(f"{len(rendered_files())} contract files, {len(changed)} changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
