"""ONNX export of the full network (encoder, decoder, DGP) with a dynamic batch axis and metadata.

Command:  python -m models.export_onnx --checkpoint weights/X.safetensors --out weights/X.onnx
          python -m models.export_onnx --preset realtime_slim --out out/slim_untrained.onnx

Graph inputs (B = hands, dynamic): ``crops (B,3,S,S)`` float32 RGB [0,1], ``K_virt (B,3,3)``,
``virt_to_cam (B,3,3)``, ``joints_2d_external (B,21,2)`` crop px and ``external_mask (B,)`` float
(1 = use the external joints of that row, 0 = use the predicted ones). Outputs: ``OUTPUT_NAMES``.
Metadata (``metadata_props``): format, config_json, asset_sha256, asset_version, output_names.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import onnx
import torch
from torch import Tensor, nn

from models.config import NUM_JOINTS, config_to_json, get_preset
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


class ExportWrapper(nn.Module):
    """Flat-tensor interface of :class:`M3DHMR` for export (always takes external joints + a float mask)."""

    def __init__(self, model: M3DHMR) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, crops: Tensor, K_virt: Tensor, virt_to_cam: Tensor, joints_2d_external: Tensor, external_mask: Tensor
    ) -> tuple[Tensor, ...]:
        out = self.model(crops, K_virt, joints_2d_external=joints_2d_external, external_mask=external_mask, virt_to_cam=virt_to_cam)
        return tuple(getattr(out, name) for name in OUTPUT_NAMES)


def example_inputs(batch: int, crop_size: int) -> tuple[Tensor, ...]:
    """Deterministic example inputs of the exported graph for a given batch size."""
    generator = torch.Generator().manual_seed(batch)
    focal = crop_size * 2.5
    centre = (crop_size - 1) / 2.0
    k_virt = torch.tensor([[focal, 0.0, centre], [0.0, focal, centre], [0.0, 0.0, 1.0]]).expand(batch, 3, 3).contiguous()
    return (
        torch.rand(batch, 3, crop_size, crop_size, generator=generator),
        k_virt,
        torch.eye(3).expand(batch, 3, 3).contiguous(),
        torch.rand(batch, NUM_JOINTS, 2, generator=generator) * (crop_size - 1),
        torch.zeros(batch),
    )


def export_onnx(model: M3DHMR, path: Path | str, opset: int = DEFAULT_OPSET) -> Path:
    """Export ``model`` (eval mode, float32, CPU) to ``path`` with the dynamo exporter and write metadata."""
    if model.config is None:
        raise ValueError("model has no config; build it with M3DHMR.from_config before exporting")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = ExportWrapper(model.float().cpu().eval()).eval()
    batch = torch.export.Dim("batch", min=1, max=1024)
    dynamic_shapes = {name: {0: batch} for name in INPUT_NAMES}
    with torch.no_grad():
        program = torch.onnx.export(
            wrapper,
            example_inputs(2, model.crop_size),
            dynamo=True,
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            dynamic_shapes=dynamic_shapes,
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
        "output_names": json.dumps(list(OUTPUT_NAMES)),
    }
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save_model(proto, str(path))
    return path


def read_onnx_metadata(path: Path | str) -> dict[str, str]:
    """``metadata_props`` of an ONNX file as a dict (without loading the weights into memory twice)."""
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
