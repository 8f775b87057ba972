"""ONNX export of the full network (encoder, decoder, DGP) with a dynamic batch axis and metadata.

Command:  python -m models.export_onnx --checkpoint weights/X.safetensors --out weights/X.onnx
          python -m models.export_onnx --preset realtime_slim --out out/slim_untrained.onnx

Graph inputs (B = hands, dynamic): ``crops (B,3,S,S)`` float32 RGB [0,1], ``K_virt (B,3,3)``,
``virt_to_cam (B,3,3)``, ``joints_2d_external (B,21,2)`` crop px and ``external_mask (B,)`` float
(1 = use the external joints of that row, 0 = use the predicted ones); fused-cue and scale models add
the inputs of :func:`input_names_for`. Outputs: :func:`output_names_for` (``OUTPUT_NAMES`` first).
Metadata (``metadata_props``): format, config_json, asset_sha256, asset_version, output_names.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch import Tensor, nn

from models.config import NUM_JOINTS, M3DHMRConfig, config_to_json, get_preset
from models.m3dhmr import M3DHMR

ONNX_FORMAT: str = "m3dhmr-dgp-onnx/1"
INPUT_NAMES: tuple[str, ...] = ("crops", "K_virt", "virt_to_cam", "joints_2d_external", "external_mask")
OUTPUT_NAMES: tuple[str, ...] = (
    "vertices_rel",
    "joints_rel",
    "joints_2d_pred",
    "joints_2d_used",
    "dgp_weights",
    "translation_virt",
    "vertices_cam",
    "joints_cam",
    "translation_cam",
    "dgp_residual",
    "dgp_degenerate",
)
DEFAULT_OPSET: int = 18
LANDMARK_INPUT_NAMES: tuple[str, ...] = ("landmarks_3d", "landmarks_3d_mask")
SCALE_INPUT_NAMES: tuple[str, ...] = ("hand_length", "hand_length_mask")
SCALE_OUTPUT_NAMES: tuple[str, ...] = ("hand_length_pred", "hand_length_used")


def input_names_for(config: M3DHMRConfig) -> tuple[str, ...]:
    """Graph inputs of a model with this config: the base five, then ``landmarks_3d (B,21,3)`` metres and
    ``landmarks_3d_mask (B,)`` with ``fused_cue``, then ``hand_length (B,)`` metres and ``hand_length_mask
    (B,)`` with ``predict_scale`` (masks are float, 1 = use the row's value)."""
    names = INPUT_NAMES
    if config.fused_cue:
        names += LANDMARK_INPUT_NAMES
    if config.predict_scale:
        names += SCALE_INPUT_NAMES
    return names


def output_names_for(config: M3DHMRConfig) -> tuple[str, ...]:
    """Graph outputs: ``OUTPUT_NAMES``, plus ``hand_length_pred``/``hand_length_used (B,)`` metres with ``predict_scale``."""
    return OUTPUT_NAMES + (SCALE_OUTPUT_NAMES if config.predict_scale else ())


class ExportWrapper(nn.Module):
    """Flat-tensor interface of :class:`M3DHMR` for export (always takes external joints + a float mask;
    the inputs of :func:`input_names_for` in that order)."""

    def __init__(self, model: M3DHMR) -> None:
        super().__init__()
        self.model = model
        assert model.config is not None
        self.input_names = input_names_for(model.config)
        self.output_names = output_names_for(model.config)

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        named = dict(zip(self.input_names, inputs))
        out = self.model(
            named["crops"], named["K_virt"], joints_2d_external=named["joints_2d_external"],
            external_mask=named["external_mask"], virt_to_cam=named["virt_to_cam"],
            landmarks_3d=named.get("landmarks_3d"), landmarks_3d_mask=named.get("landmarks_3d_mask"),
            hand_length_given=named.get("hand_length"), hand_length_mask=named.get("hand_length_mask"),
        )
        return tuple(getattr(out, name) for name in self.output_names)


def example_inputs(batch: int, crop_size: int, config: M3DHMRConfig | None = None) -> tuple[Tensor, ...]:
    """Deterministic example inputs of the exported graph for a given batch size (``input_names_for(config)``)."""
    generator = torch.Generator().manual_seed(batch)
    focal = crop_size * 2.5
    centre = (crop_size - 1) / 2.0
    k_virt = torch.tensor([[focal, 0.0, centre], [0.0, focal, centre], [0.0, 0.0, 1.0]]).expand(batch, 3, 3).contiguous()
    inputs = (
        torch.rand(batch, 3, crop_size, crop_size, generator=generator),
        k_virt,
        torch.eye(3).expand(batch, 3, 3).contiguous(),
        torch.rand(batch, NUM_JOINTS, 2, generator=generator) * (crop_size - 1),
        torch.zeros(batch),
    )
    if config is not None and config.fused_cue:
        inputs += ((torch.rand(batch, NUM_JOINTS, 3, generator=generator) - 0.5) * 0.15, torch.ones(batch))
    if config is not None and config.predict_scale:
        inputs += (torch.full((batch,), 0.185), torch.zeros(batch))
    return inputs


def export_onnx(model: M3DHMR, path: Path | str, opset: int = DEFAULT_OPSET) -> Path:
    """Export ``model`` (eval mode, float32, CPU) to ``path`` with the dynamo exporter and write metadata."""
    if model.config is None:
        raise ValueError("model has no config; build it with M3DHMR.from_config before exporting")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = ExportWrapper(model.float().cpu().eval()).eval()
    batch = torch.export.Dim("batch", min=1, max=1024)
    input_names = input_names_for(model.config)
    output_names = output_names_for(model.config)
    dynamic_shapes = ({0: batch} for _ in input_names)
    with torch.no_grad():
        program = torch.onnx.export(
            wrapper,
            example_inputs(2, model.crop_size, model.config),
            dynamo=True,
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_shapes=(tuple(dynamic_shapes),),
            opset_version=opset,
            optimize=True,
            verify=False,
            external_data=False,
        )
    proto = program.model_proto
    metadata = {
        "format": ONNX_FORMAT,
        "config_json": config_to_json(model.config),
        "asset_sha256": model.asset_sha256,
        "asset_version": model.asset_version,
        "output_names": json.dumps(list(output_names)),
    }
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    import onnx  # imported here: the constants above are needed on machines without onnx (GPU run)

    onnx.save_model(proto, str(path))
    return path


def read_onnx_metadata(path: Path | str) -> dict[str, str]:
    """``metadata_props`` of an ONNX file as a dict (without loading the weights into memory twice)."""
    import onnx

    proto = onnx.load_model(str(path), load_external_data=False)
    return {entry.key: entry.value for entry in proto.metadata_props}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="safetensors checkpoint written by save_checkpoint")
    source.add_argument("--preset", help="export an untrained preset (paper_r18, paper_r34, realtime_slim)")
    parser.add_argument("--out", type=Path, required=True, help="output .onnx path")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    args = parser.parse_args(argv)
    if args.checkpoint is not None:
        from models.checkpoint import load_checkpoint

        model = load_checkpoint(args.checkpoint)
    else:
        torch.manual_seed(0)
        model = M3DHMR.from_config(get_preset(args.preset)).eval()
    out = export_onnx(model, args.out, opset=args.opset)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB), asset {model.asset_sha256[:16]}, config {model.config.name}")


if __name__ == "__main__":
    main()
