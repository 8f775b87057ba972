"""Misuse battery: crafted MANO pickles and weights manifests that point outside weights/.

Each test is one case of issue 11 and failed on the code before the fix: the MANO unpickler resolved
any global (``os.system`` ran), and the doctor hashed ``../`` entries and crashed on an entry without
``path``.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from app import doctor
from models.file_hash import sha256_file
from models.hand.mano import MANOLoadError, read_mano_pickle


class _RunsCommand:
    """Pickles to ``os.system(command)``: what a crafted MANO_RIGHT.pkl would contain."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple:
        import os

        return (os.system, (self.command,))


class _CallsGlobal:
    """Pickles to ``func(*args)`` for an arbitrary importable callable."""

    def __init__(self, func: object, *args: object) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple:
        return (self.func, self.args)


def test_a_mano_pickle_that_calls_os_system_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    crafted = tmp_path / "MANO_RIGHT.pkl"
    crafted.write_bytes(pickle.dumps({"v_template": _RunsCommand(f"touch {marker}")}, protocol=2))
    with pytest.raises(MANOLoadError, match="refused") as info:
        read_mano_pickle(crafted)
    assert type(info.value).__name__ == "MANOUnsafePickleError" and "system" in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize("func,args", [
    (eval, ("1 + 1",)),
    (getattr, (object, "__subclasses__")),
    (__import__, ("subprocess",)),
    (pickle.loads, (b"N.",)),
], ids=["eval", "getattr", "import", "nested-pickle"])
def test_a_mano_pickle_with_any_other_callable_is_refused(tmp_path: Path, func: object, args: tuple) -> None:
    crafted = tmp_path / "MANO_RIGHT.pkl"
    crafted.write_bytes(pickle.dumps({"f": _CallsGlobal(func, *args)}, protocol=2))
    with pytest.raises(MANOLoadError, match="refused"):
        read_mano_pickle(crafted)


def _manifest(folder: Path, files: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "manifest.json"
    path.write_text(json.dumps({"files": files}))
    return path


def test_doctor_refuses_a_manifest_path_outside_weights_and_does_not_hash_it(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("not a weight file")
    manifest = _manifest(tmp_path / "weights", [{"path": "../secret.txt", "sha256": sha256_file(secret)}])
    check = doctor.check_weights(manifest)
    assert check.status == "fail" and "outside" in check.detail


@pytest.mark.parametrize("rel", ["../../etc/passwd", "/etc/passwd", "sub/../../x.bin", "..\\x.bin"])
def test_manifest_entries_leaving_the_folder_are_never_opened(tmp_path: Path, rel: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import models.weights_manifest as wm

    hashed: list[Path] = []
    monkeypatch.setattr(wm, "sha256_file", lambda p: hashed.append(Path(p)) or "0" * 64)
    manifest = _manifest(tmp_path / "weights", [{"path": rel, "sha256": "0" * 64}])
    parsed = wm.load_manifest(manifest)
    assert parsed.entries == () and len(parsed.problems) == 1
    with pytest.raises(wm.ManifestError):
        wm.entry_file(manifest, rel)
    assert doctor.check_weights(manifest).status == "fail"
    assert hashed == []


def test_a_link_inside_weights_that_points_outside_is_refused(tmp_path: Path) -> None:
    from models.weights_manifest import load_manifest

    target = tmp_path / "outside.bin"
    target.write_bytes(b"x")
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "inside.bin").symlink_to(target)
    manifest = _manifest(folder, [{"path": "inside.bin", "sha256": sha256_file(target)}])
    assert load_manifest(manifest).entries == ()
    assert doctor.check_weights(manifest).status == "fail"


@pytest.mark.parametrize("entry,needle", [({"sha256": "0" * 64}, "no 'path'"), ({"path": "a.bin"}, "sha256"),
                                          ("a.bin", "not an object"), ({"path": 3, "sha256": "0" * 64}, "not a string")])
def test_doctor_reports_a_malformed_manifest_entry_instead_of_crashing(tmp_path: Path, entry: object,
                                                                       needle: str) -> None:
    check = doctor.check_weights(_manifest(tmp_path / "weights", [entry]))
    assert check.status == "fail" and needle in check.detail


def test_loading_weights_never_hashes_entries_outside_the_folder(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import models.weights_manifest as wm

    weights = tmp_path / "weights" / "model.onnx"
    weights.parent.mkdir()
    weights.write_bytes(b"model bytes")
    _manifest(weights.parent, [{"path": "../../etc/passwd", "sha256": "0" * 64},
                               {"path": "model.onnx", "sha256": sha256_file(weights)}])
    hashed: list[Path] = []
    real = wm.sha256_file
    monkeypatch.setattr(wm, "sha256_file", lambda p: hashed.append(Path(p)) or real(p))
    assert wm.verify_weights_file(weights) is True
    assert hashed == [weights]
