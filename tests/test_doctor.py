"""The pre-flight doctor: table, JSON, exit codes and manifest checking."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from app import doctor
from models.file_hash import sha256_file
from models.paths import REPO_ROOT


def _run_doctor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "run_demo.py"), "doctor", "--no-cameras", *args],
        capture_output=True, text=True, timeout=180, cwd="/",
    )


def test_parse_requirements(tmp_path: Path) -> None:
    req = tmp_path / "r.txt"
    req.write_text("# comment\ntorch==2.13.0  # pinned\nnumpy==1.26.4; python_version>'3'\n--find-links x\nrich\nfoo[extra]==1.2\n")
    assert doctor.parse_requirements(req) == [
        doctor.Requirement("torch", "2.13.0"), doctor.Requirement("numpy", "1.26.4"),
        doctor.Requirement("rich", None), doctor.Requirement("foo", "1.2"),
    ]


def test_missing_package_fails_and_is_named() -> None:
    (check,) = doctor.check_packages([doctor.Requirement("surely-not-installed-pkg", "1.0")])
    assert check.status == "fail" and "surely-not-installed-pkg==1.0" in check.fix


def test_version_mismatch_warns() -> None:
    (check,) = doctor.check_packages([doctor.Requirement("pytest", "0.0.1")])
    assert check.status == "warn" and "0.0.1" in check.detail


def test_weights_manifest_hash_checked(tmp_path: Path) -> None:
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"abc")
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"files": [{"path": weights.name, "sha256": sha256_file(weights)}]}))
    assert doctor.check_weights(manifest).status == "ok"
    weights.write_bytes(b"abd")
    failed = doctor.check_weights(manifest)
    assert failed.status == "fail" and "mismatch" in failed.detail
    weights.unlink()
    assert "missing" in doctor.check_weights(manifest).detail


def test_table_has_fix_for_failures() -> None:
    table = doctor.format_table([doctor.Check("a", "ok", "fine"), doctor.Check("b", "fail", "broken", "do X")])
    assert "FAIL" in table and "do X" in table and "1 failed" in table


@pytest.mark.slow
def test_cli_json_and_nonzero_exit_when_package_missing(tmp_path: Path) -> None:
    req = tmp_path / "requirements.txt"
    req.write_text((REPO_ROOT / "requirements.txt").read_text() + "surely-not-installed-pkg==1.0\n")
    proc = _run_doctor("--json", "--requirements", str(req))
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    names = {c["name"]: c for c in report["checks"]}
    assert names["package surely-not-installed-pkg"]["status"] == "fail"
    assert names["package torch"]["status"] == "ok"
    assert not report["ready"]


@pytest.mark.slow
def test_cli_table_lists_every_check() -> None:
    proc = _run_doctor()
    for name in ("python", "package torch", "torch device", "onnxruntime providers", "mediapipe hand models",
                 "open3d", "qt platform", "free disk", "skin bounds", "weights"):
        assert name in proc.stdout, proc.stdout


def test_hand_asset_is_verified() -> None:
    check = doctor.check_hand_asset()
    assert check.status == "ok" and "896 vertices" in check.detail


def test_skin_bounds_are_verified(tmp_path: Path) -> None:
    check = doctor.check_skin_bounds()
    assert check.status == "ok" and "896 bounds" in check.detail
    broken = tmp_path / "bounds.json"
    broken.write_text('{"bounds_m": [0.001]}', encoding="utf-8")
    check = doctor.check_skin_bounds(broken)
    assert check.status == "fail" and "1 bounds for a mesh of 896" in check.detail and "training.skin_bounds" in check.fix
