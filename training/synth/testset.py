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


@functools.lru_cache(maxsize=1)
def generator_fingerprint() -> str:
    """12 hex digits identifying what the generator draws: sha256 over training/synth/*.py and the hand asset."""
    from models.hand.asset import load_hand_asset

    digest = hashlib.sha256(load_hand_asset().sha256.encode())
    for path in sorted(SYNTH_SOURCE_DIR.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def synth_testset_path(num_samples: int, seed: int, crop_size: int, cache_dir: Path | None = None) -> Path:
    """Cache file of one test set configuration."""
    folder = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE_DIR
    return folder / f"synth_test_{generator_fingerprint()}_seed{seed}_n{num_samples}_s{crop_size}.npz"


def generate_synth_testset(num_samples: int, seed: int = TEST_SEED, crop_size: int = 128) -> list[View]:
    """Generate the test views without touching the cache."""
    dataset = SynthHandDataset(seed=seed, length=num_samples, crop_size=crop_size, two_views=False)
    return [dataset[i][0] for i in range(num_samples)]


def load_synth_testset(
    num_samples: int = 1000, seed: int = TEST_SEED, crop_size: int = 128, cache_dir: Path | None = None
) -> list[View]:
    """The fixed test set as a list of view dicts (from the cache when present, else generated and cached)."""
    if num_samples < 1:
        raise ValueError(f"load_synth_testset: num_samples must be >= 1, got {num_samples}")
    path = synth_testset_path(num_samples, seed, crop_size, cache_dir)
    if path.is_file():
        with np.load(path) as data:
            keys = [k for k in data.files]
            arrays = {k: data[k] for k in keys}
        return [{k: arrays[k][i] for k in keys} for i in range(num_samples)]
    views = generate_synth_testset(num_samples, seed, crop_size)
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
