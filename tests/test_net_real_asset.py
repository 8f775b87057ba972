"""Network layers on the real hand topology asset (skipped until assets/hand_model_v1.npz exists)."""
from __future__ import annotations

import pytest
import torch

from models.config import get_preset
from models.decoder import MeshDecoder
from models.paths import ASSETS_DIR
from models.roi import ROILayer
from models.topology import DecoderTopology

pytestmark = pytest.mark.skipif(not (ASSETS_DIR / "hand_model_v1.npz").is_file(), reason="real hand asset not generated yet")


@pytest.fixture(scope="module")
def topology() -> DecoderTopology:
    from models.hand.asset import load_hand_asset

    return DecoderTopology.from_asset(load_hand_asset())


def test_topology_levels_and_template(topology: DecoderTopology) -> None:
    assert topology.num_levels == len(get_preset("paper_r18").decoder_channels)
    joints = topology.joint_regressor @ topology.template_vertices
    assert joints[0].abs().max() < 1e-5  # wrist at the origin
    extent = topology.template_vertices.max(0).values - topology.template_vertices.min(0).values
    assert 0.1 < float(extent.max()) < 0.3  # a hand is about 0.2 m long
    coarse = topology.coarse_template()
    assert coarse.shape == (topology.level_num_vertices[-1], 3)


def test_roi_layer_never_mixes_regions_on_real_asset(topology: DecoderTopology) -> None:
    torch.manual_seed(0)
    layer = ROILayer(roi_spirals=topology.roi_spirals, channels=3).double()
    x = torch.randn(1, topology.num_vertices, 3, dtype=torch.float64, requires_grad=True)
    out = layer(x)
    for region in range(6):
        inside = topology.regions == region
        grad = torch.autograd.grad(out[:, inside].sum(), x, retain_graph=True)[0].abs().sum(dim=(0, 2))
        assert grad[inside].sum() > 0 and grad[~inside].sum() == 0


@pytest.mark.parametrize("decoder_type", ["dsc", "spiralconv++", "dsconv"])
def test_decoder_on_real_asset_starts_near_template(topology: DecoderTopology, decoder_type: str) -> None:
    torch.manual_seed(0)
    decoder = MeshDecoder(topology=topology, in_channels=10, channels=(8, 8, 8, 16, 16), decoder_type=decoder_type, num_kernels=8, use_roi=True)
    out = decoder(torch.randn(7, 21, 10))
    assert out.shape == (7, topology.num_vertices, 3)
    assert (out - topology.template_vertices).abs().max() < 0.05
