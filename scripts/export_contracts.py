"""Write the contract catalogue to contracts/: JSON Schemas, asyncapi.json and TOPICS.md.

python scripts/export_contracts.py           # (re)write the files
python scripts/export_contracts.py --check   # exit 1 and list the files that are out of date
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from contracts.catalogue import rendered_files

CONTRACTS_DIR = Path(__file__).resolve().parents[1] / "contracts"
SCHEMAS = "schemas"


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if any file is out of date")
    args = parser.parse_args(argv)
    where = CONTRACTS_DIR.relative_to(CONTRACTS_DIR.parent)
    if args.check:
        problems = differences()
        for problem in problems:
            print(f"{where}/{problem}", file=sys.stderr)
        if problems:
            print("contracts are out of date: run `make contracts` (scripts/export_contracts.py)", file=sys.stderr)
            return 1
        print(f"{len(rendered_files())} contract files up to date")
        return 0
    changed = export()
    for change in changed:
        print(f"{where}/{change}")
    print(f"{len(rendered_files())} contract files, {len(changed)} changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
