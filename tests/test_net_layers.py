"""Spiral convolutions, Dynamic Spiral Convolution, ROI layer and topology conversion."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from models.decoder import MeshDecoder
from models.dsc import DynamicLinear, DynamicSpiralConv
from models.roi import ROILayer
from models.spiral import DepthSeparableSpiralConv, SpiralConv
from models.topology import DecoderTopology, PaddedSparse, apply_padded_sparse
from models.errors import TopologyError
from tests.net_fixtures import make_icosphere_asset


@pytest.fixture(scope="module")
def topology() -> DecoderTopology:
    return DecoderTopology.from_asset(make_icosphere_asset())


@pytest.mark.parametrize("batch", [1, 2, 7])
@pytest.mark.parametrize("layer_cls", [SpiralConv, DepthSeparableSpiralConv, DynamicSpiralConv])
def test_mesh_conv_shapes(topology: DecoderTopology, batch: int, layer_cls: type) -> None:
    torch.manual_seed(0)
    spirals = topology.spirals[2]
    layer = layer_cls(spirals=spirals, in_channels=5, out_channels=7)
    out = layer(torch.randn(batch, spirals.shape[0], 5))
    assert out.shape == (batch, spirals.shape[0], 7)
    assert "spirals" not in layer.state_dict()


def test_spiral_conv_matches_explicit_loop(topology: DecoderTopology) -> None:
    torch.manual_seed(1)
    spirals = topology.spirals[3]
    layer = SpiralConv(spirals=spirals, in_channels=3, out_channels=4)
    x = torch.randn(2, spirals.shape[0], 3)
    out = layer(x)
    v = 17
    expected = layer.linear(torch.cat([x[:, int(i)] for i in spirals[v]], dim=-1))
    torch.testing.assert_close(out[:, v], expected)


def test_dynamic_linear_output_mixing_equals_weight_mixing() -> None:
    torch.manual_seed(2)
    layer = DynamicLinear(in_features=6, out_features=5, num_kernels=8).double()
    x = torch.randn(3, 11, 6, dtype=torch.float64)
    attention = torch.softmax(torch.randn(3, 11, 8, dtype=torch.float64), dim=-1)
    torch.testing.assert_close(layer(x, attention), layer.forward_mixed_weights(x, attention), rtol=1e-12, atol=1e-12)


def test_dsc_fast_path_equals_weight_mixing(topology: DecoderTopology) -> None:
    torch.manual_seed(3)
    layer = DynamicSpiralConv(spirals=topology.spirals[3], in_channels=4, out_channels=6, num_kernels=8).double()
    x = torch.randn(2, topology.spirals[3].shape[0], 4, dtype=torch.float64)
    torch.testing.assert_close(layer(x), layer.forward_mixed_weights(x), rtol=1e-12, atol=1e-12)


def test_dsc_attention_is_a_distribution_per_vertex(topology: DecoderTopology) -> None:
    torch.manual_seed(4)
    layer = DynamicSpiralConv(spirals=topology.spirals[2], in_channels=8, out_channels=8, num_kernels=8)
    attention = layer.kernel_attention(torch.randn(3, topology.spirals[2].shape[0], 8) * 5)
    assert attention.shape == (3, topology.spirals[2].shape[0], 8)
    assert torch.all(attention >= 0)
    torch.testing.assert_close(attention.sum(-1), torch.ones(attention.shape[:-1]))
    assert layer.attention.fc1.out_features == 4  # first attention layer halves the channels
    assert attention.std(dim=1).max() > 1e-4  # attention really varies over vertices


def test_dsc_with_one_kernel_equals_plain_spiral_conv(topology: DecoderTopology) -> None:
    torch.manual_seed(5)
    spirals = topology.spirals[2]
    dsc = DynamicSpiralConv(spirals=spirals, in_channels=4, out_channels=6, num_kernels=1)
    plain = SpiralConv(spirals=spirals, in_channels=4, out_channels=6)
    channel = torch.nn.Linear(6, 6)
    with torch.no_grad():
        plain.linear.weight.copy_(dsc.spatial.weight[0])
        plain.linear.bias.copy_(dsc.spatial.bias[0])
        channel.weight.copy_(dsc.channel.weight[0])
        channel.bias.copy_(dsc.channel.bias[0])
    x = torch.randn(3, spirals.shape[0], 4)
    attention = dsc.kernel_attention(x)
    torch.testing.assert_close(attention, torch.ones_like(attention))
    # the spatial pair alone is exactly the plain spiral conv ...
    gathered = x[:, spirals].flatten(2)
    torch.testing.assert_close(dsc.spatial(gathered, attention), plain(x))
    # ... and the whole layer is spiral conv -> ReLU -> per-vertex linear with the same weights
    torch.testing.assert_close(dsc(x), channel(torch.relu(plain(x))))


def test_dsconv_is_depthwise_then_pointwise(topology: DecoderTopology) -> None:
    torch.manual_seed(6)
    spirals = topology.spirals[3]
    layer = DepthSeparableSpiralConv(spirals=spirals, in_channels=3, out_channels=2)
    x = torch.randn(1, spirals.shape[0], 3)
    v = 5
    depthwise = sum(layer.depthwise_weight[l] * x[0, int(spirals[v, l])] for l in range(spirals.shape[1]))
    expected = layer.pointwise(depthwise + layer.depthwise_bias)
    torch.testing.assert_close(layer(x)[0, v], expected)


def test_roi_layer_never_mixes_regions(topology: DecoderTopology) -> None:
    torch.manual_seed(7)
    layer = ROILayer(roi_spirals=topology.roi_spirals, channels=4).double()
    regions = topology.regions
    x = torch.randn(2, topology.num_vertices, 4, dtype=torch.float64, requires_grad=True)
    out = layer(x)
    for region in range(6):
        grad = torch.autograd.grad(out[:, regions == region].sum(), x, retain_graph=True)[0]
        touched = grad.abs().sum(dim=(0, 2)) > 0
        assert touched[regions == region].any()
        assert not touched[regions != region].any(), f"region {region} output depends on other regions"


def test_roi_spirals_are_dilated_and_region_restricted(topology: DecoderTopology) -> None:
    roi = topology.roi_spirals
    assert torch.all(topology.regions[roi] == topology.regions[:, None])
    assert torch.equal(roi[:, 0], torch.arange(topology.num_vertices))


def test_padded_sparse_matches_dense(topology: DecoderTopology) -> None:
    asset = make_icosphere_asset()
    up = asset.up[1]
    dense = np.zeros(up.shape, np.float32)
    np.add.at(dense, (up.indices[0], up.indices[1]), up.values)
    padded = PaddedSparse.from_coo(up.indices, up.values, up.shape)
    torch.testing.assert_close(padded.dense(), torch.from_numpy(dense))
    x = torch.randn(3, up.shape[1], 2)
    torch.testing.assert_close(apply_padded_sparse(x, padded.index, padded.weight), torch.from_numpy(dense) @ x)


def test_topology_rejects_region_leaking_roi_spirals() -> None:
    asset = make_icosphere_asset()
    roi = asset.roi_spirals.copy()
    other = int(np.flatnonzero(asset.regions != asset.regions[0])[0])
    roi[0, 3] = other
    broken = type(asset)(**{**asset.__dict__, "roi_spirals": roi})
    with pytest.raises(TopologyError, match="region"):
        DecoderTopology.from_asset(broken)


@pytest.mark.parametrize("decoder_type", ["dsc", "spiralconv++", "dsconv"])
@pytest.mark.parametrize("use_roi", [True, False])
def test_decoder_variants(topology: DecoderTopology, decoder_type: str, use_roi: bool) -> None:
    torch.manual_seed(8)
    decoder = MeshDecoder(
        topology=topology, in_channels=6, channels=(4, 4, 4, 8, 8), decoder_type=decoder_type, num_kernels=2, use_roi=use_roi
    )
    out = decoder(torch.randn(2, 21, 6))
    assert out.shape == (2, topology.num_vertices, 3)
    assert (decoder.roi is not None) == use_roi
    lifted = decoder.lifting(torch.randn(1, 21, 6))
    assert lifted.shape == (1, topology.level_num_vertices[-1], 6)
