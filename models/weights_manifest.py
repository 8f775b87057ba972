"""The weights manifest (``weights/manifest.json``): reading it safely and verifying files against it.

A manifest lists files by a path relative to its own folder with their sha256 (and size). Shipped
weights are verified at load: a weights file that lies next to a ``manifest.json`` listing it must
match the listed hash, else :class:`WeightsIntegrityError` (one flipped exponent byte otherwise puts
a hand 1e32 m away without any other sign). Manifest paths must stay inside the manifest's folder:
an entry such as ``../../etc/passwd`` is refused, never opened or hashed.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from models.errors import CheckpointError
from models.file_hash import sha256_file

LOG = logging.getLogger(__name__)

MANIFEST_NAME: str = "manifest.json"
RESTORE_HINT: str = "restore the shipped weights with `git checkout -- weights/` (or re-download the release)"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ManifestError(CheckpointError):
    """A weights manifest is unreadable, or one of its entries is malformed or points outside its folder."""


class WeightsIntegrityError(CheckpointError):
    """A weights file does not match the sha256 (or size) its manifest lists: it is corrupt or was modified."""


@dataclass(frozen=True)
class ManifestEntry:
    """One valid file entry: ``path`` relative to the manifest's folder (POSIX separators), lower-case hex sha256."""

    path: str
    sha256: str
    bytes: int | None = None
    kind: str | None = None


@dataclass(frozen=True)
class Manifest:
    """A parsed manifest: the valid entries and one message per entry that was refused."""

    path: Path
    entries: tuple[ManifestEntry, ...]
    problems: tuple[str, ...]

    @property
    def folder(self) -> Path:
        return self.path.parent


def _entry_path_problem(rel: str) -> str | None:
    """Why ``rel`` may not be used as a manifest path (None when it is a plain relative path)."""
    if not rel or rel.strip() != rel:
        return "an empty path or one with surrounding spaces"
    if "\x00" in rel or "\\" in rel:
        return "a path with a backslash or NUL character"
    posix, windows = PurePosixPath(rel), PureWindowsPath(rel)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or rel.startswith("~"):
        return "an absolute path"
    if any(part in ("..", ".") for part in posix.parts):
        return "a path with '..' or '.' components"
    return None


def entry_file(manifest_path: Path | str, rel: str) -> Path:
    """The file a manifest path names, guaranteed to lie inside the manifest's folder.

    Raises:
        ManifestError: ``rel`` is absolute, has ``..`` components, or resolves (through links) outside.
    """
    folder = Path(manifest_path).parent
    problem = _entry_path_problem(rel)
    if problem is not None:
        raise ManifestError(f"{manifest_path}: entry {rel!r} is {problem}; manifest paths must stay inside "
                            f"{folder}. Refused (not opened); {RESTORE_HINT}.")
    file = folder / rel
    try:
        file.resolve().relative_to(folder.resolve())
    except ValueError as err:
        raise ManifestError(f"{manifest_path}: entry {rel!r} resolves outside {folder} (a link?); refused (not "
                            f"opened); {RESTORE_HINT}.") from err
    return file


def _parse_entry(raw: Any, number: int, manifest_path: Path) -> ManifestEntry | str:
    """A valid entry, or a message saying why entry ``number`` (1-based) is refused."""
    if not isinstance(raw, dict):
        return f"entry #{number} is not an object"
    rel = raw.get("path")
    if not isinstance(rel, str):
        return f"entry #{number} has no 'path'" if rel is None else f"entry #{number}: 'path' is not a string"
    try:
        entry_file(manifest_path, rel)
    except ManifestError:
        return f"entry {rel!r} points outside {manifest_path.parent.name}/ (refused, not hashed)"
    sha = raw.get("sha256")
    if not isinstance(sha, str) or not _SHA256.match(sha.lower()):
        return f"entry {rel!r} has no valid 'sha256' (64 hex digits)"
    size = raw.get("bytes")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        return f"entry {rel!r}: 'bytes' is not a non-negative integer"
    kind = raw.get("kind")
    return ManifestEntry(path=rel, sha256=sha.lower(), bytes=size, kind=kind if isinstance(kind, str) else None)


def load_manifest(manifest_path: Path | str) -> Manifest:
    """Parse a manifest; malformed entries are collected in ``problems``, never used.

    Raises:
        ManifestError: the file cannot be read, is not JSON, or has no ``files`` list.
    """
    path = Path(manifest_path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ManifestError(f"weights manifest {path} is unreadable ({err}); {RESTORE_HINT}.") from err
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, list):
        raise ManifestError(f"weights manifest {path} has no 'files' list; {RESTORE_HINT}.")
    entries: list[ManifestEntry] = []
    problems: list[str] = []
    for number, raw in enumerate(files, start=1):
        parsed = _parse_entry(raw, number, path)
        if isinstance(parsed, str):
            problems.append(parsed)
        else:
            entries.append(parsed)
    return Manifest(path=path, entries=tuple(entries), problems=tuple(problems))


def check_entry(manifest: Manifest, entry: ManifestEntry) -> str | None:
    """Why ``entry``'s file does not match (missing, size, sha256), or None when it matches."""
    file = entry_file(manifest.path, entry.path)
    if not file.is_file():
        return f"{entry.path} missing"
    if entry.bytes is not None and file.stat().st_size != entry.bytes:
        return f"{entry.path} has {file.stat().st_size} bytes, the manifest lists {entry.bytes}"
    if sha256_file(file) != entry.sha256:
        return f"{entry.path} sha256 mismatch"
    return None


def find_entry(path: Path | str) -> tuple[Manifest, ManifestEntry] | None:
    """The manifest next to ``path`` and its entry for ``path``; None when there is no manifest or no entry.

    Raises:
        ManifestError: a manifest is next to the file but cannot be read.
    """
    file = Path(path)
    manifest_path = file.parent / MANIFEST_NAME
    if not manifest_path.is_file():
        return None
    manifest = load_manifest(manifest_path)
    target = file.resolve()
    for entry in manifest.entries:
        if entry_file(manifest_path, entry.path).resolve() == target:
            return manifest, entry
    return None


def verify_weights_file(path: Path | str) -> bool:
    """Verify a weights file against the ``manifest.json`` in its folder, when that manifest lists it.

    Returns:
        True when the file was verified; False when no manifest lists it (nothing to verify against).
    Raises:
        WeightsIntegrityError: the file's size or sha256 differs from the manifest (corrupt or modified).
        ManifestError: the manifest next to the file is unreadable.
    """
    file = Path(path)
    found = find_entry(file)
    if found is None:
        LOG.info("%s is not listed in a manifest next to it: its integrity is not verified", file)
        return False
    manifest, entry = found
    problem = check_entry(manifest, entry)
    if problem is not None:
        raise WeightsIntegrityError(
            f"weights file {file} does not match {manifest.path} ({problem}): it is corrupt or was modified, "
            f"and its results would be wrong. Refused; {RESTORE_HINT}."
        )
    return True
