"""Static import rules of the project, checked by parsing every module with :mod:`ast`.

Rules (DESIGN.md, "Layout"):
* only ``app/ui/`` may import PyQt6;
* ``models/`` imports none of cv2, PyQt6, ``app``, ``training``;
* ``training/`` does not import ``app``.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

PACKAGES: tuple[str, ...] = ("app", "models", "training", "tests")
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "models": ("cv2", "PyQt6", "app", "training"),
    "training": ("app", "PyQt6"),
}


@dataclass(frozen=True)
class Violation:
    path: Path
    line: int
    module: str
    rule: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: imports {self.module} ({self.rule})"


def imported_modules(source: str) -> list[tuple[int, str]]:
    """Top-level module names imported by ``source`` as (line, name); relative imports are skipped."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def find_violations(root: Path) -> list[Violation]:
    """Every import in ``root``'s packages that breaks the layering rules."""
    violations = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root)
            in_ui = rel.parts[:2] == ("app", "ui")
            for line, module in imported_modules(path.read_text(encoding="utf-8")):
                if module == "PyQt6" and not in_ui and package != "tests":
                    violations.append(Violation(rel, line, module, "only app/ui/ may import PyQt6"))
                elif module in FORBIDDEN.get(package, ()):
                    violations.append(Violation(rel, line, module, f"{package}/ must not import {module}"))
    return violations
