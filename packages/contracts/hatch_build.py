"""Put the repository's contracts/ package in the wheel, without the released baselines (the
compatibility gate's, kept in the repository) or bytecode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

LEFT_OUT = {"released", "__pycache__"}


class ContractsPackage(BuildHookInterface):  # type: ignore[misc]  # hatchling is the build's, not the environment's
    def initialize(self, _version: str, build_data: dict[str, Any]) -> None:
        source = (Path(self.root) / ".." / ".." / "contracts").resolve()
        for path in sorted(source.rglob("*")):
            relative = path.relative_to(source)
            if path.is_file() and not LEFT_OUT & set(relative.parts):
                build_data["force_include"][str(path)] = f"contracts/{relative.as_posix()}"
