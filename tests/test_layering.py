"""The dependency rules of DESIGN.md hold for the whole tree, and the checker catches breaks."""
from __future__ import annotations

from pathlib import Path

from models.paths import REPO_ROOT
from tests.layering import find_violations


def test_repository_respects_layering() -> None:
    violations = find_violations(REPO_ROOT)
    assert not violations, "layering broken:\n" + "\n".join(map(str, violations))


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_stray_qt_import_in_models_is_caught(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"models/net.py": "import torch\nfrom PyQt6 import QtCore\n"})
    (violation,) = find_violations(root)
    assert violation.module == "PyQt6" and violation.line == 2


def test_cv2_app_training_imports_in_models_are_caught(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"models/a.py": "import cv2\nimport app.pipeline\nfrom training import losses\n"})
    assert sorted(v.module for v in find_violations(root)) == ["app", "cv2", "training"]


def test_qt_allowed_only_in_app_ui(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "app/ui/window.py": "from PyQt6.QtWidgets import QMainWindow\n",
        "app/pipeline.py": "import PyQt6.QtCore\n",
    })
    (violation,) = find_violations(root)
    assert violation.path == Path("app/pipeline.py")


def test_relative_and_allowed_imports_pass(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "models/a.py": "from . import b\nimport numpy\nimport torch.nn\n",
        "app/b.py": "import cv2\nfrom models import a\n",
    })
    assert find_violations(root) == []
