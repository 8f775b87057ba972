"""Weights that fit a size limit per file: float32 when they fit, else bfloat16 split into parts.

A GPU machine returns at most a few files of 16 MiB each. ``write_limited_weights`` writes a trained
checkpoint (``models.checkpoint`` format) as

* ``<stem>.safetensors`` in float32 when the whole file fits ``max_file_bytes`` (``realtime_slim``, 12 MB);
* otherwise in bfloat16, one ``<stem>.safetensors`` file if that fits, else ``<stem>.partIofN.safetensors``
  files (``paper_r18``: 115 MiB in float32, 4 parts of about 14.4 MiB in bfloat16).

Every file keeps the checkpoint's metadata (config, asset hash, training recipe). A single file, float32 or
bfloat16, loads as it is (``load_state_dict`` casts bfloat16 into the float32 model). Parts carry a
``weight_parts`` metadata entry (group id, index, count) and are joined into one float32 checkpoint by
:func:`join_parts` (``python -m training.ship`` does it when given any part). Integer tensors (batch-norm
counters) keep their dtype.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from models.checkpoint import CHECKPOINT_FORMAT
from models.errors import CheckpointError

PARTS_KEY: str = "weight_parts"
PARTS_FORMAT: str = "handmesh-weight-parts/1"
MIB: int = 2**20
HEADER_MARGIN_BYTES: int = 128 * 1024  # safetensors header (names, offsets, metadata incl. the training recipe): ~40 KB


@dataclass(frozen=True)
class LimitedWeights:
    """What :func:`write_limited_weights` wrote: file paths, the float dtype stored and the total size in bytes."""

    paths: tuple[Path, ...]
    dtype: str
    total_bytes: int

    @property
    def parts(self) -> int:
        return len(self.paths)


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{path} is not a readable safetensors file: {error}") from error
    return load_file(str(path)), metadata


def _cast(tensors: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    return {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in tensors.items()}


def _stored_bytes(t: torch.Tensor, dtype: torch.dtype) -> int:
    return t.numel() * (torch.empty(0, dtype=dtype).element_size() if t.is_floating_point() else t.element_size())


def layout(tensors: dict[str, torch.Tensor], max_file_bytes: int) -> tuple[torch.dtype, list[list[str]]]:
    """How :func:`write_limited_weights` stores ``tensors``: the float dtype and the tensor names of each file.

    float32 in one file when it fits; else bfloat16, packed first-fit decreasing into as few files as the
    limit allows (a few large convolution kernels next to many small tensors pack tightly that way).
    """
    budget = max_file_bytes - HEADER_MARGIN_BYTES
    if sum(_stored_bytes(t, torch.float32) for t in tensors.values()) <= budget:
        return torch.float32, [list(tensors)]
    sizes = {k: _stored_bytes(t, torch.bfloat16) for k, t in tensors.items()}
    bins: list[list[str]] = []
    room: list[int] = []
    for key in sorted(sizes, key=lambda k: -sizes[k]):
        if sizes[key] > budget:
            raise CheckpointError(f"tensor {key} ({sizes[key] / MIB:.1f} MiB) alone exceeds the per-file limit ({budget / MIB:.1f} MiB)")
        slot = next((i for i, r in enumerate(room) if r >= sizes[key]), None)
        if slot is None:
            bins.append([])
            room.append(budget)
            slot = len(bins) - 1
        bins[slot].append(key)
        room[slot] -= sizes[key]
    order = {k: i for i, k in enumerate(tensors)}
    return torch.bfloat16, [sorted(b, key=order.__getitem__) for b in bins]


def layout_file_bytes(tensors: dict[str, torch.Tensor], max_file_bytes: int) -> list[int]:
    """Tensor bytes of each file :func:`write_limited_weights` would write (headers not counted)."""
    dtype, groups = layout(tensors, max_file_bytes)
    return [sum(_stored_bytes(tensors[k], dtype) for k in group) for group in groups]


def write_limited_weights(checkpoint: Path, out_dir: Path, stem: str, max_file_bytes: int = 15 * MIB) -> LimitedWeights:
    """Write ``checkpoint`` into ``out_dir`` so that every file is at most ``max_file_bytes`` (see module doc).

    Older files of the same stem (single or parts) are removed first, so the folder never mixes two saves.
    Files are written under a temporary name and renamed, so a run killed mid-write leaves whole files.
    """
    tensors, metadata = _read(Path(checkpoint))
    if metadata.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{checkpoint} is not a {CHECKPOINT_FORMAT} checkpoint")
    out_dir.mkdir(parents=True, exist_ok=True)
    float_dtype, names_per_file = layout(tensors, max_file_bytes)
    cast = _cast(tensors, float_dtype)
    groups = [{k: cast[k] for k in names} for names in names_per_file]
    dtype = "float32" if float_dtype == torch.float32 else "bfloat16"
    for old in list(out_dir.glob(f"{stem}.safetensors")) + list(out_dir.glob(f"{stem}.part*of*.safetensors")):
        old.unlink()
    if len(groups) == 1:
        names = [f"{stem}.safetensors"]
    else:
        names = [f"{stem}.part{i + 1}of{len(groups)}.safetensors" for i in range(len(groups))]
    group_id = hashlib.sha256(json.dumps([sorted(g) for g in groups]).encode() + metadata.get("step", "").encode()).hexdigest()[:16]
    paths = []
    for i, (name, group) in enumerate(zip(names, groups)):
        meta = dict(metadata)
        meta["weights_dtype"] = dtype
        if len(groups) > 1:
            meta[PARTS_KEY] = json.dumps({"format": PARTS_FORMAT, "group": group_id, "index": i + 1, "count": len(groups), "stem": stem})
        path = out_dir / name
        tmp = out_dir / (name + ".tmp")
        save_file(group, str(tmp), metadata=meta)
        tmp.replace(path)
        if path.stat().st_size > max_file_bytes:
            raise CheckpointError(f"{path} is {path.stat().st_size} bytes, over the limit {max_file_bytes}")
        paths.append(path)
    return LimitedWeights(paths=tuple(paths), dtype=dtype, total_bytes=sum(p.stat().st_size for p in paths))


def part_info(path: Path) -> dict[str, object] | None:
    """The ``weight_parts`` metadata of ``path`` (group, index, count, stem), or None for a whole checkpoint."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = (handle.metadata() or {}).get(PARTS_KEY)
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{path} is not a readable safetensors file: {error}") from error
    if raw is None:
        return None
    info = json.loads(raw)
    if info.get("format") != PARTS_FORMAT:
        raise CheckpointError(f"{path} has weight parts of an unknown format {info.get('format')!r}")
    return info


def join_parts(any_part: Path, out_path: Path) -> Path:
    """Join all parts of the group ``any_part`` belongs to (found beside it) into one float32 checkpoint."""
    any_part = Path(any_part)
    info = part_info(any_part)
    if info is None:
        raise CheckpointError(f"{any_part} is a whole checkpoint, not a weight part")
    stem, count, group = str(info["stem"]), int(info["count"]), str(info["group"])  # type: ignore[arg-type]
    tensors: dict[str, torch.Tensor] = {}
    base_meta: dict[str, str] = {}
    for index in range(1, count + 1):
        path = any_part.parent / f"{stem}.part{index}of{count}.safetensors"
        if not path.is_file():
            raise CheckpointError(f"weight part {path} is missing: all {count} parts of {stem} must lie in {any_part.parent}")
        part, meta = _read(path)
        got = json.loads(meta.get(PARTS_KEY, "{}"))
        if got.get("group") != group or int(got.get("index", -1)) != index:
            raise CheckpointError(f"{path} belongs to another save (group {got.get('group')}, expected {group}); copy the parts of one save together")
        clash = set(part) & set(tensors)
        if clash:
            raise CheckpointError(f"weight parts of {stem} repeat tensors {sorted(clash)[:3]}")
        tensors.update(part)
        if index == 1:
            base_meta = {k: v for k, v in meta.items() if k not in (PARTS_KEY, "weights_dtype")}
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    base_meta["joined_from"] = f"{count} {stem} parts (bfloat16 weights, group {group})"
    save_file(_cast(tensors, torch.float32), str(out_path), metadata=base_meta)
    return out_path


def resolve_checkpoint(path: Path, work_dir: Path) -> Path:
    """``path`` itself for a whole checkpoint; for a weight part, the joined float32 checkpoint in ``work_dir``."""
    info = part_info(Path(path))
    if info is None:
        return Path(path)
    return join_parts(Path(path), Path(work_dir) / f"{info['stem']}.joined.safetensors")
