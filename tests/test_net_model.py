"""Full M3DHMR + DGP forward: shapes over batch sizes, frames, external 2D joints, presets and config."""
from __future__ import annotations

import copy

import dataclasses

import numpy as np
import pytest
import torch

from models.config import PRESETS, M3DHMRConfig, config_from_json, config_to_json, crops_to_network_input, get_preset
from models.errors import InputShapeError, UnknownPresetError
from models.m3dhmr import M3DHMR
from models.paths import ASSETS_DIR
from models.rectify import rectification_from_box
from tests.net_fixtures import make_icosphere_asset, tiny_config

CROP = 64


def virtual_k(batch: int, crop: int = CROP, focal: float = 160.0) -> torch.Tensor:
    c = (crop - 1) / 2.0
    return torch.tensor([[focal, 0.0, c], [0.0, focal, c], [0.0, 0.0, 1.0]]).expand(batch, 3, 3).contiguous()


@pytest.fixture(scope="module")
def model() -> M3DHMR:
    torch.manual_seed(0)
    return M3DHMR.from_config(tiny_config(), make_icosphere_asset()).eval()


@pytest.mark.parametrize("batch", [1, 2, 7])
def test_forward_shapes(model: M3DHMR, batch: int) -> None:
    vertex_count = make_icosphere_asset().level_num_vertices[0]
    with torch.no_grad():
        out = model(torch.rand(batch, 3, CROP, CROP), virtual_k(batch))
    expected = {
        "vertices_rel": (batch, vertex_count, 3),
        "joints_rel": (batch, 21, 3),
        "joints_2d_pred": (batch, 21, 2),
        "joints_2d_stacks": (batch, 2, 21, 2),
        "heatmaps": (batch, 2, 21, CROP // 4, CROP // 4),
        "joints_2d_used": (batch, 21, 2),
        "dgp_weights": (batch, 21),
        "translation_virt": (batch, 3),
        "vertices_virt": (batch, vertex_count, 3),
        "joints_virt": (batch, 21, 3),
        "vertices_cam": (batch, vertex_count, 3),
        "joints_cam": (batch, 21, 3),
        "translation_cam": (batch, 3),
        "dgp_residual": (batch,),
        "dgp_degenerate": (batch,),
        "vertices_unit": (batch, vertex_count, 3),
        "hand_length_pred": (batch,),
        "hand_length_used": (batch,),
    }
    for name, value in out.as_dict().items():
        assert tuple(value.shape) == expected[name], name
        if value.dtype != torch.bool:
            assert torch.isfinite(value).all(), name
    torch.testing.assert_close(out.joints_rel[:, 0], torch.zeros(batch, 3))
    assert torch.all((out.dgp_weights > 0) & (out.dgp_weights < 1))
    assert torch.all((out.joints_2d_pred >= -0.5) & (out.joints_2d_pred <= CROP - 0.5))
    torch.testing.assert_close(out.heatmaps.sum(dim=(-1, -2)), torch.ones(batch, 2, 21))


def test_batch_elements_are_independent(model: M3DHMR) -> None:
    # float64: float32 kernels may pick other summation orders per batch size, which an untrained
    # DGP amplifies; independence itself must hold to rounding.
    model64 = copy.deepcopy(model).double()
    crops = torch.rand(3, 3, CROP, CROP, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        together = model64(crops, virtual_k(3).double())
        alone = model64(crops[1:2], virtual_k(1).double())
    torch.testing.assert_close(together.vertices_cam[1:2], alone.vertices_cam, atol=1e-9, rtol=1e-9)


def test_external_joints_and_mask(model: M3DHMR) -> None:
    crops = torch.rand(2, 3, CROP, CROP, generator=torch.Generator().manual_seed(2))
    external = torch.rand(2, 21, 2, generator=torch.Generator().manual_seed(3)) * (CROP - 1)
    with torch.no_grad():
        own = model(crops, virtual_k(2))
        ext = model(crops, virtual_k(2), joints_2d_external=external)
        mixed = model(crops, virtual_k(2), joints_2d_external=external, external_mask=torch.tensor([True, False]))
    torch.testing.assert_close(ext.joints_2d_used, external)
    torch.testing.assert_close(own.joints_2d_used, own.joints_2d_pred)
    torch.testing.assert_close(mixed.joints_2d_used[0], external[0])
    torch.testing.assert_close(mixed.joints_2d_used[1], own.joints_2d_pred[1])
    assert (ext.vertices_rel - own.vertices_rel).abs().max() > 0  # features really come from the given joints
    torch.testing.assert_close(mixed.vertices_rel[1], own.vertices_rel[1])


def test_camera_space_outputs_follow_the_rectification(model: M3DHMR) -> None:
    intrinsics = np.array([[900.0, 0.0, 640.0], [0.0, 900.0, 360.0], [0.0, 0.0, 1.0]])
    boxes = np.array([[20.0, 30.0, 220.0, 260.0], [900.0, 400.0, 1100.0, 650.0]])
    rect = rectification_from_box(np.broadcast_to(intrinsics, (2, 3, 3)), boxes, crop_size=CROP, mirror=np.array([False, True]))
    with torch.no_grad():
        out = model(
            torch.rand(2, 3, CROP, CROP),
            torch.from_numpy(rect.K_virt).float(),
            virt_to_cam=torch.from_numpy(rect.virt_to_cam).float(),
        )
    virt_to_cam = torch.from_numpy(rect.virt_to_cam).float()
    torch.testing.assert_close(out.vertices_cam, out.vertices_virt @ virt_to_cam.transpose(1, 2))
    torch.testing.assert_close(out.translation_cam, out.joints_cam[:, 0])
    # Projecting camera-space joints into the image and through H equals projecting virtual joints with K_virt.
    joints_cam = out.joints_cam.double().numpy()
    image = joints_cam @ intrinsics.T
    image = image[..., :2] / image[..., 2:]
    crop_from_h = np.einsum("bij,bnj->bni", rect.H, np.concatenate([image, np.ones(image.shape[:-1] + (1,))], -1))
    crop_from_h = crop_from_h[..., :2] / crop_from_h[..., 2:]
    virt = out.joints_virt.double().numpy() @ np.swapaxes(rect.K_virt, -1, -2)
    np.testing.assert_allclose(crop_from_h, virt[..., :2] / virt[..., 2:], atol=1e-3)


def test_translation_loss_reaches_the_encoder(model: M3DHMR) -> None:
    trainable = M3DHMR.from_config(tiny_config(), make_icosphere_asset()).train()
    out = trainable(torch.rand(2, 3, CROP, CROP), virtual_k(2))
    out.translation_virt.square().sum().backward()
    stem_grad = trainable.encoder.stem[0][0].weight.grad
    assert stem_grad is not None and stem_grad.abs().sum() > 0
    assert trainable.dgp_head.mlp[0].weight.grad.abs().sum() > 0


def test_bad_input_raises_typed_error(model: M3DHMR) -> None:
    with pytest.raises(InputShapeError, match="crops"):
        model(torch.rand(1, 3, 32, 32), virtual_k(1))
    with pytest.raises(InputShapeError, match="K_virt"):
        model(torch.rand(2, 3, CROP, CROP), virtual_k(1))


@pytest.mark.parametrize("decoder_type,use_roi", [("spiralconv++", True), ("dsconv", True), ("dsc", False)])
def test_ablation_configs_build_and_run(decoder_type: str, use_roi: bool) -> None:
    config = tiny_config(decoder_type=decoder_type, use_roi=use_roi)
    ablation = M3DHMR.from_config(config, make_icosphere_asset()).eval()
    with torch.no_grad():
        out = ablation(torch.rand(2, 3, CROP, CROP), virtual_k(2))
    assert out.vertices_cam.shape[0] == 2
    assert (ablation.decoder.roi is None) == (not use_roi)


def test_presets_and_config_json() -> None:
    assert set(PRESETS) == {"paper_r18", "paper_r34", "realtime_slim", "realtime_fused"}
    assert get_preset("realtime_fused").fused_cue and get_preset("realtime_fused").predict_scale
    assert get_preset("paper_r34").encoder_blocks == (3, 4, 6, 3)
    assert get_preset("paper_r18").num_kernels == 8 and get_preset("paper_r18").decoder_type == "dsc"
    for config in PRESETS.values():
        assert config_from_json(config_to_json(config)) == config
    changed = dataclasses.replace(get_preset("paper_r18"), decoder_type="dsconv", use_roi=False)
    assert config_from_json(config_to_json(changed)) == changed
    with pytest.raises(UnknownPresetError):
        get_preset("resnet50")
    with pytest.raises(ValueError):
        M3DHMRConfig(name="x", encoder_blocks=(1, 1, 1, 1), width_mult=1.0, num_stacks=1, feature_channels=8, decoder_type="gcn", decoder_channels=(8,))


def test_crops_to_network_input() -> None:
    crops = np.zeros((2, 8, 8, 3), np.uint8)
    crops[..., 0] = 255  # red channel stays channel 0 (RGB in, RGB out)
    out = crops_to_network_input(crops)
    assert out.shape == (2, 3, 8, 8) and out.dtype == np.float32
    assert out[:, 0].min() == 1.0 and out[:, 1:].max() == 0.0
    with pytest.raises(InputShapeError):
        crops_to_network_input(crops.astype(np.float32))


@pytest.mark.skipif(not (ASSETS_DIR / "hand_model_v1.npz").is_file(), reason="real hand asset not generated yet")
@pytest.mark.parametrize("batch", [1, 2])
def test_realtime_preset_on_real_asset(batch: int) -> None:
    from models.hand.asset import load_hand_asset

    asset = load_hand_asset()
    torch.manual_seed(0)
    net = M3DHMR.from_config(get_preset("realtime_slim")).eval()
    assert net.asset_sha256 == asset.sha256
    size = net.crop_size
    with torch.no_grad():
        out = net(torch.rand(batch, 3, size, size), virtual_k(batch, size, focal=300.0))
    assert out.vertices_rel.shape == (batch, asset.template_vertices.shape[0], 3)
    assert torch.isfinite(out.vertices_cam).all()
    # untrained decoder starts at the template mesh (wrist-relative)
    template = torch.from_numpy(asset.template_vertices)
    assert (out.vertices_rel[0] - template).abs().max() < 0.05
