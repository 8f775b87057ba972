"""The network's forward pass reads nothing back from the device and copies nothing from the host.

On a GPU either one stalls every call (the app's eager path) and makes CUDA graph capture fail, which the
torch backend uses on CUDA (``app.backends.torch_backend``). This test finds both on the CPU: a torch
function mode records tensors built from Python or numpy data, indexing with Python lists, and reads of
tensor values (``item``, ``tolist``, ``int``, ``float``, ``bool``) made while the model runs.
"""
from __future__ import annotations

import dataclasses
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from models.config import get_preset
from models.inference_runners import example_inputs
from models.m3dhmr import M3DHMR
from models.paths import REPO_ROOT

HOST_DATA = {torch.tensor, torch.as_tensor, torch.from_numpy}
VALUE_READS = {torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.__bool__, torch.Tensor.__int__,
               torch.Tensor.__float__, torch.Tensor.numpy}


def _host_index(index: Any) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return any(isinstance(p, (list, np.ndarray)) for p in parts)


class HostTraffic(TorchFunctionMode):
    """Records ``file:line`` (our code) of every host-data tensor, list index and value read."""

    def __init__(self) -> None:
        super().__init__()
        self.sites: list[str] = []

    def _record(self, what: str) -> None:
        ours = [f for f in traceback.extract_stack() if str(REPO_ROOT / "models") in f.filename]
        where = f"{Path(ours[-1].filename).name}:{ours[-1].lineno}" if ours else "?"
        self.sites.append(f"{what} at {where}")

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        if func in HOST_DATA or func in VALUE_READS:
            self._record(getattr(func, "__name__", str(func)))
        elif func is torch.Tensor.__getitem__ and len(args) > 1 and _host_index(args[1]):
            self._record("list index")
        return func(*args, **(kwargs or {}))


def test_the_mode_sees_what_it_looks_for() -> None:
    x = torch.zeros(5, 3)
    with HostTraffic() as mode:
        x[[0, 2]]
        torch.tensor([1.0])
        float(x.sum())
        x[1:3].sum(0)
    assert [s.split(" at ")[0] for s in mode.sites] == ["list index", "tensor", "__float__"]


@pytest.mark.parametrize("ensemble", [False, True], ids=["one row per hand", "depth ensemble"])
def test_forward_makes_no_host_round_trips(ensemble: bool) -> None:
    """The shipped network's structure (fused cue, predicted scale, ROI, DGP, smoothing, skin clamp)."""
    config = dataclasses.replace(get_preset("realtime_fused"), skin_clamp=True)
    torch.manual_seed(0)
    model = M3DHMR.from_config(config).eval()
    inputs = example_inputs(config, 2, "cpu", ensemble=ensemble)
    names = ("crops", "K_virt", "virt_to_cam", "joints_2d_external", "external_mask", "landmarks_3d",
             "landmarks_3d_mask", "hand_length", "hand_length_mask", "crop_index")
    named = dict(zip(names, inputs))
    model._check_inputs = lambda *a, **k: None  # input validation reads values on the CPU by design
    with torch.inference_mode(), HostTraffic() as mode:
        model(named["crops"], named["K_virt"], joints_2d_external=named["joints_2d_external"],
              external_mask=named["external_mask"], virt_to_cam=named["virt_to_cam"],
              landmarks_3d=named["landmarks_3d"], landmarks_3d_mask=named["landmarks_3d_mask"],
              hand_length_given=named["hand_length"], hand_length_mask=named["hand_length_mask"],
              crop_index=named["crop_index"])
    assert not mode.sites, sorted(set(mode.sites))
