"""The fixed synthetic test set: generated on demand from a seed, cached outside git.

`load_synth_testset(n, seed, crop_size)` returns n single-view sample dicts (keys as
`training.synth.dataset.SynthHandDataset`), identical on every machine for the same code version.
They are cached as one .npz in `REPO_ROOT/data/synth_test/` (gitignored); the cache key contains
`generator_fingerprint()`, a hash of the generator's source files and the hand asset, so a cache made
by other generator code is never read back.

    python -m training.synth.testset --n 1000      # build (or verify) the cache and print its path
"""
from __future__ import annotations

import argparse
import functools
import hashlib
from pathlib import Path

import numpy as np

from models.paths import REPO_ROOT
from training.synth.dataset import SynthHandDataset, View

TEST_SEED: int = 1_000_003
DEFAULT_CACHE_DIR: Path = REPO_ROOT / "data" / "synth_test"
SYNTH_SOURCE_DIR: Path = Path(__file__).resolve().parent
NOT_DRAWING: frozenset[str] = frozenset({"testset.py", "realism.py", "benchmark.py", "__init__.py"})
"""Modules of the package that do not decide what a sample looks like (caching, reports, timing)."""


@functools.lru_cache(maxsize=1)
def generator_fingerprint() -> str:
    """12 hex digits identifying what the generator draws: sha256 over the hand asset and the
    training/synth/*.py modules that draw samples (not ``NOT_DRAWING``: a cache or report change keeps it)."""
    from models.hand.asset import load_hand_asset

    digest = hashlib.sha256(load_hand_asset().sha256.encode())
    for path in sorted(SYNTH_SOURCE_DIR.glob("*.py")):
        if path.name in NOT_DRAWING:
            continue
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def synth_testset_path(num_samples: int, seed: int, crop_size: int, cache_dir: Path | None = None) -> Path:
    """Cache file of one test set configuration."""
    folder = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE_DIR
    return folder / f"synth_test_{generator_fingerprint()}_seed{seed}_n{num_samples}_s{crop_size}.npz"


def _first_view(sample: tuple[View, ...]) -> View:
    return sample[0]


def generate_synth_testset(num_samples: int, seed: int = TEST_SEED, crop_size: int = 128, workers: int = 0) -> list[View]:
    """Generate the test views without touching the cache.

    ``workers > 0`` generates in that many worker processes (a torch DataLoader, in index order); the
    views are identical to the single-process ones, since every sample depends only on (seed, index).
    """
    dataset = SynthHandDataset(seed=seed, length=num_samples, crop_size=crop_size, two_views=False)
    if workers <= 0:
        return [dataset[i][0] for i in range(num_samples)]
    from torch.utils.data import DataLoader

    loader = DataLoader(dataset, batch_size=None, shuffle=False, num_workers=workers, collate_fn=_first_view,
                        prefetch_factor=8)
    return list(loader)


def load_synth_testset(
    num_samples: int = 1000, seed: int = TEST_SEED, crop_size: int = 128, cache_dir: Path | None = None,
    workers: int = 0,
) -> list[View]:
    """The fixed test set as a list of view dicts (from the cache when present, else generated, with
    ``workers`` processes when > 0, and cached)."""
    if num_samples < 1:
        raise ValueError(f"load_synth_testset: num_samples must be >= 1, got {num_samples}")
    path = synth_testset_path(num_samples, seed, crop_size, cache_dir)
    if path.is_file():
        with np.load(path) as data:
            keys = [k for k in data.files]
            arrays = {k: data[k] for k in keys}
        return [{k: arrays[k][i] for k in keys} for i in range(num_samples)]
    views = generate_synth_testset(num_samples, seed, crop_size, workers=workers)
    path.parent.mkdir(parents=True, exist_ok=True)
    stacked = {k: np.stack([v[k] for v in views]) for k in views[0]}
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **stacked)
    tmp.replace(path)
    return views


def main() -> None:
    parser = argparse.ArgumentParser(description="Build the fixed synthetic test set cache.")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=TEST_SEED)
    parser.add_argument("--crop", type=int, default=128)
    args = parser.parse_args()
    views = load_synth_testset(args.n, args.seed, args.crop)
    print(f"{len(views)} test samples at {synth_testset_path(args.n, args.seed, args.crop)}")


if __name__ == "__main__":
    main()
