"""Training samples with MediaPipe's real outputs: cached synthetic frames (with ground truth) and real
photos (MediaPipe's landmarks as pseudo-labels), as written by ``python -m app.mediapipe_labels``.

This module reads those cache folders only (``chunk_*.npz``); it never runs MediaPipe. A sample is a dict
of numpy arrays (see :data:`SAMPLE_KEYS`); :func:`collate_cue_samples` stacks them into a :class:`CueBatch`.
Real photos are split by file into a fixed held-out part (``photo_split``), never trained on.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from models.config import crops_to_network_input
from training.appearance import mix_amplitude_spectrum
from training.synth.augment import random_color_jitter

HELD_OUT_FRACTION: float = 0.1
SAMPLE_KEYS: tuple[str, ...] = (
    "crop_rgb", "K_virt", "virt_from_cam", "crop_from_image", "mp_uv_crop", "mp_world_virt", "mp_score",
    "joints_cam", "verts_cam", "has_gt", "has_mp",
)
_CHUNK_KEYS: tuple[str, ...] = ("index", "crop_rgb", "K_virt", "virt_from_cam", "crop_from_image", "mp_uv_crop",
                                "mp_world_virt", "mp_score", "mp_right", "is_right")


class CueDataError(RuntimeError):
    """A MediaPipe label cache is missing or unreadable."""


@dataclass
class CueCache:
    """All hands of one cache folder, stacked (N hands). Ground-truth arrays are None for photos."""

    folder: Path
    arrays: dict[str, np.ndarray]
    all_found: np.ndarray
    all_handed_ok: np.ndarray
    files: list[str] | None

    @property
    def has_gt(self) -> bool:
        return "joints_cam" in self.arrays

    def __len__(self) -> int:
        return int(self.arrays["index"].shape[0])

    def detection_rate(self) -> float:
        return float(self.all_found.mean()) if self.all_found.size else 0.0


def load_cue_cache(folder: Path | str, max_inputs: int | None = None) -> CueCache:
    """Read every ``chunk_*.npz`` of a cache folder (in order), optionally only inputs ``< max_inputs``."""
    folder = Path(folder)
    chunks = sorted(folder.glob("chunk_*.npz"))
    chunks = [c for c in chunks if not c.name.endswith(".tmp.npz")]
    if not chunks:
        raise CueDataError(f"no chunk_*.npz in {folder}; build it with `python -m app.mediapipe_labels ...`")
    parts: dict[str, list[np.ndarray]] = {}
    found, handed = [], []
    for chunk in chunks:
        with np.load(chunk) as data:
            keep_all = data["all_index"] < max_inputs if max_inputs is not None else np.ones(len(data["all_index"]), bool)
            found.append(data["all_found"][keep_all])
            handed.append(data["all_handed_ok"][keep_all])
            if "crop_rgb" not in data.files:
                continue
            keep = data["index"] < max_inputs if max_inputs is not None else np.ones(len(data["index"]), bool)
            keys = [k for k in data.files if not k.startswith("all_")]
            for key in keys:
                parts.setdefault(key, []).append(data[key][keep])
    if not parts:
        raise CueDataError(f"{folder} holds no detected hands")
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    files_json = folder / "files.json"
    files = json.loads(files_json.read_text(encoding="utf-8")) if files_json.is_file() else None
    return CueCache(folder, arrays, np.concatenate(found), np.concatenate(handed), files)


def merge_cue_caches(caches: list[CueCache]) -> CueCache:
    """One synthetic cache holding the hands of several (e.g. the default generator's and a variant's with
    real backgrounds); the keys every cache has are kept, ``index`` is renumbered to stay unique."""
    if len(caches) == 1:
        return caches[0]
    if any(c.files is not None for c in caches):
        raise CueDataError("merge_cue_caches merges synthetic caches only")
    keys = set.intersection(*(set(c.arrays) for c in caches))
    arrays = {k: np.concatenate([c.arrays[k] for c in caches]) for k in keys}
    offsets = np.cumsum([0] + [len(c.all_found) for c in caches[:-1]])
    arrays["index"] = np.concatenate([c.arrays["index"] + off for c, off in zip(caches, offsets)])
    return CueCache(caches[0].folder, arrays, np.concatenate([c.all_found for c in caches]),
                    np.concatenate([c.all_handed_ok for c in caches]), None)


def photo_is_held_out(name: str) -> bool:
    """Fixed split by file name: about ``HELD_OUT_FRACTION`` of the photos (sha256 of the relative path)."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return digest[0] < int(256 * HELD_OUT_FRACTION)


def photo_split(cache: CueCache, held_out: bool) -> np.ndarray:
    """Indices of the hands of a photo cache in the held-out (True) or training (False) part."""
    if cache.files is None:
        raise CueDataError(f"{cache.folder} has no files.json: not a photo cache")
    flags = np.array([photo_is_held_out(cache.files[i]) for i in cache.arrays["index"]], bool)
    return np.nonzero(flags == held_out)[0]


class CueDataset(Dataset):
    """Hands from a synthetic cache and (optionally) a photo cache, one sample per index.

    Indices ``[0, n_synth)`` are synthetic, ``[n_synth, n_synth + n_real)`` are training photos.
    ``spectrum_source`` / ``spectrum_mix_prob``: with that probability a synthetic crop's low-frequency
    amplitude spectrum is mixed with a random training photo's (``training.appearance``).
    ``augment``: photometric jitter of the crop (seeded by ``seed`` and the index, so a sample is a
    deterministic function of (seed, index, epoch)). ``num_vertices``: mesh size of the zero placeholders
    that photo samples carry (default: the synthetic cache's, else 0).
    """

    def __init__(self, synth: CueCache | None, photos: CueCache | None = None, *, augment: bool = True,
                 seed: int = 0, photo_indices: np.ndarray | None = None, num_vertices: int | None = None,
                 spectrum_source: CueCache | None = None, spectrum_mix_prob: float = 0.0) -> None:
        self.synth = synth
        self.photos = photos
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.synth_len = len(synth) if synth is not None else 0
        if photos is not None:
            self.photo_indices = photo_split(photos, held_out=False) if photo_indices is None else photo_indices
        else:
            self.photo_indices = np.zeros(0, np.int64)
        if num_vertices is None:
            num_vertices = int(synth.arrays["verts_cam"].shape[1]) if synth is not None else 0
        self.num_vertices = num_vertices
        self.spectrum_source = spectrum_source
        self.spectrum_mix_prob = float(spectrum_mix_prob) if spectrum_source is not None else 0.0
        self.spectrum_indices = (photo_split(spectrum_source, held_out=False) if spectrum_source is not None
                                 else np.zeros(0, np.int64))
        """Vertex count of the zero placeholders of photo samples (must match the synthetic ones in a batch)."""

    def __len__(self) -> int:
        return self.synth_len + len(self.photo_indices)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        if index < self.synth_len:
            assert self.synth is not None
            src, i, has_gt = self.synth, index, True
        else:
            assert self.photos is not None
            src, i, has_gt = self.photos, int(self.photo_indices[index - self.synth_len]), False
        a = src.arrays
        crop = a["crop_rgb"][i]
        if self.augment:
            rng = np.random.default_rng([self.seed, self.epoch, int(index)])
            if has_gt and self.spectrum_mix_prob > 0 and len(self.spectrum_indices) and rng.random() < self.spectrum_mix_prob:
                assert self.spectrum_source is not None
                real = self.spectrum_source.arrays["crop_rgb"][int(rng.choice(self.spectrum_indices))]
                crop = mix_amplitude_spectrum(crop, real, band=float(rng.uniform(0.03, 0.1)), weight=float(rng.uniform(0.3, 1.0)))
            crop = random_color_jitter(crop, rng, strength=0.5)
        sample = {
            "crop_rgb": np.ascontiguousarray(crop),
            "K_virt": a["K_virt"][i],
            "virt_from_cam": a["virt_from_cam"][i],
            "crop_from_image": a["crop_from_image"][i],
            "mp_uv_crop": a["mp_uv_crop"][i],
            "mp_world_virt": a["mp_world_virt"][i],
            "mp_score": np.asarray(a["mp_score"][i], np.float32),
            "has_gt": np.asarray(has_gt),
            "has_mp": np.asarray(True),
        }
        if has_gt:
            sample["joints_cam"] = a["joints_cam"][i]
            sample["verts_cam"] = a["verts_cam"][i]
        else:
            sample["joints_cam"] = np.zeros((21, 3), np.float32)
            sample["verts_cam"] = np.zeros((self.num_vertices, 3), np.float32)
        return sample


class GeneratorCueDataset(Dataset):
    """Synthetic hands straight from the image-only trainer's generator (``training.synth.dataset``), as
    cue samples without MediaPipe: cropped from a box drawn around the true 2D joints and rendered in
    the generator's crop window, including the hands MediaPipe misses, whose crops the label caches
    never hold. ``mp_*`` are zeros and ``has_mp`` is False: these rows can only run the ``network`` cue.

    Sample ``i`` is ``SynthHandDataset(seed, two_views=False)[i]`` (the generator's own photometric
    jitter, nothing more); ``length`` is what ``len()`` reports.
    """

    def __init__(self, seed: int, length: int = 1_000_000, crop_size: int = 128) -> None:
        from training.synth.dataset import SynthHandDataset

        self.views = SynthHandDataset(seed=seed, length=length, crop_size=crop_size, two_views=False)

    def __len__(self) -> int:
        return len(self.views)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        (view,) = self.views[index]
        return {
            "crop_rgb": view["crop_rgb"],
            "K_virt": view["K_virt"],
            "virt_from_cam": view["virt_from_cam"],
            "crop_from_image": view["crop_from_image"],
            "mp_uv_crop": np.zeros((21, 2), np.float32),
            "mp_world_virt": np.zeros((21, 3), np.float32),
            "mp_score": np.asarray(0.0, np.float32),
            "has_gt": np.asarray(True),
            "has_mp": np.asarray(False),
            "joints_cam": view["joints_cam"],
            "verts_cam": view["verts_cam"],
        }


@dataclass(frozen=True)
class CueBatch:
    """A stacked batch (B rows). Frames and units as in ``app.mediapipe_labels``.

    crops (B,3,S,S) float32 RGB [0,1]; K_virt, virt_from_cam, crop_from_image (B,3,3); mp_uv (B,21,2) crop px;
    mp_world_virt (B,21,3) metres wrist-relative (crop frame); mp_score (B,); has_gt (B,) bool;
    has_mp (B,) bool (False: no MediaPipe landmarks, ``mp_*`` are zeros; only the network cue applies);
    joints_cam (B,21,3), verts_cam (B,V,3) metres (zeros where has_gt is False); joints_uv (B,21,2) crop px
    projection of the true joints (zeros without ground truth); verts_rel (B,V,3), joints_rel (B,21,3):
    true wrist-relative points in the crop frame.
    """

    crops: torch.Tensor
    K_virt: torch.Tensor
    virt_from_cam: torch.Tensor
    crop_from_image: torch.Tensor
    mp_uv: torch.Tensor
    mp_world_virt: torch.Tensor
    mp_score: torch.Tensor
    has_gt: torch.Tensor
    joints_cam: torch.Tensor
    verts_cam: torch.Tensor
    joints_uv: torch.Tensor
    verts_rel: torch.Tensor
    joints_rel: torch.Tensor
    has_mp: torch.Tensor

    def to(self, device: torch.device | str) -> CueBatch:
        return CueBatch(**{k: getattr(self, k).to(device) for k in self.__dataclass_fields__})

    def __len__(self) -> int:
        return int(self.crops.shape[0])


def collate_cue_samples(samples: list[dict[str, np.ndarray]]) -> CueBatch:
    """Stack sample dicts (see :class:`CueDataset`) into a :class:`CueBatch`."""
    crops = torch.from_numpy(crops_to_network_input(np.stack([s["crop_rgb"] for s in samples])))

    def stack(key: str, dtype: type = np.float32) -> torch.Tensor:
        return torch.from_numpy(np.stack([np.asarray(s[key], dtype=dtype) for s in samples]))

    k_virt, virt_from_cam = stack("K_virt"), stack("virt_from_cam")
    joints_cam, verts_cam = stack("joints_cam"), stack("verts_cam")
    joints_virt = joints_cam @ virt_from_cam.transpose(1, 2)
    verts_virt = verts_cam @ virt_from_cam.transpose(1, 2)
    uvw = joints_virt @ k_virt.transpose(1, 2)
    has_gt = stack("has_gt", bool)
    joints_uv = torch.where(has_gt.reshape(-1, 1, 1), uvw[..., :2] / uvw[..., 2:3].clamp_min(1e-6), torch.zeros_like(uvw[..., :2]))
    return CueBatch(
        crops=crops,
        K_virt=k_virt,
        virt_from_cam=virt_from_cam,
        crop_from_image=stack("crop_from_image"),
        mp_uv=stack("mp_uv_crop"),
        mp_world_virt=stack("mp_world_virt"),
        mp_score=stack("mp_score"),
        has_gt=has_gt,
        joints_cam=joints_cam,
        verts_cam=verts_cam,
        joints_uv=joints_uv,
        verts_rel=verts_virt - joints_virt[:, :1],
        joints_rel=joints_virt - joints_virt[:, :1],
        has_mp=stack("has_mp", bool),
    )
