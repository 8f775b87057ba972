"""ONNX export of the full network (encoder, decoder, DGP) with a dynamic batch axis and metadata.

Command:  python -m models.export_onnx --checkpoint weights/X.safetensors --out weights/X.onnx
          python -m models.export_onnx --preset realtime_slim --out out/slim_untrained.onnx

Graph inputs (B = crops, R = rows, both dynamic): ``crops (B,3,S,S)`` float32 RGB [0,1], ``K_virt (R,3,3)``,
``virt_to_cam (R,3,3)``, ``joints_2d_external (R,21,2)`` crop px and ``external_mask (R,)`` float
(1 = use the external joints of that row, 0 = use the predicted ones); fused-cue and scale models add
the inputs of :func:`input_names_for`; the last input, ``crop_index (R,)`` int64, says which crop each
row reads (``arange(B)`` for one row per crop; the app's depth ensemble runs each crop as three rows and
the encoder once). Outputs (R rows): :func:`output_names_for` (``OUTPUT_NAMES`` first). Files exported
before ``crop_index`` existed have no such input; ``app.backends.onnx_backend`` repeats crops for them.
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
CROP_INDEX_INPUT: str = "crop_index"


def input_names_for(config: M3DHMRConfig) -> tuple[str, ...]:
    """Graph inputs of a model with this config: the base five, then ``landmarks_3d (B,21,3)`` metres and
    ``landmarks_3d_mask (B,)`` with ``fused_cue``, then ``hand_length (B,)`` metres and ``hand_length_mask
    (B,)`` with ``predict_scale`` (masks are float, 1 = use the row's value), and last ``crop_index (R,)``."""
    names = INPUT_NAMES
    if config.fused_cue:
        names += LANDMARK_INPUT_NAMES
    if config.predict_scale:
        names += SCALE_INPUT_NAMES
    return names + (CROP_INDEX_INPUT,)


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
            crop_index=named.get(CROP_INDEX_INPUT),
        )
        return tuple(getattr(out, name) for name in self.output_names)


def example_inputs(batch: int, crop_size: int, config: M3DHMRConfig | None = None,
                   crops: int | None = None) -> tuple[Tensor, ...]:
    """Deterministic example inputs of the exported graph for ``batch`` rows (``input_names_for(config)``
    with a config, else the base five): ``crops`` crops (default: one per row) and ``crop_index`` cycling
    over them."""
    generator = torch.Generator().manual_seed(batch)
    num_crops = batch if crops is None else crops
    focal = crop_size * 2.5
    centre = (crop_size - 1) / 2.0
    k_virt = torch.tensor([[focal, 0.0, centre], [0.0, focal, centre], [0.0, 0.0, 1.0]]).expand(batch, 3, 3).contiguous()
    inputs = (
        torch.rand(num_crops, 3, crop_size, crop_size, generator=generator),
        k_virt,
        torch.eye(3).expand(batch, 3, 3).contiguous(),
        torch.rand(batch, NUM_JOINTS, 2, generator=generator) * (crop_size - 1),
        torch.zeros(batch),
    )
    if config is not None and config.fused_cue:
        inputs += ((torch.rand(batch, NUM_JOINTS, 3, generator=generator) - 0.5) * 0.15, torch.ones(batch))
    if config is not None and config.predict_scale:
        inputs += (torch.full((batch,), 0.185), torch.zeros(batch))
    if config is not None:
        inputs += (torch.arange(batch, dtype=torch.int64) % num_crops,)
    return inputs


def export_onnx(model: M3DHMR, path: Path | str, opset: int = DEFAULT_OPSET) -> Path:
    """Export ``model`` (eval mode, float32, CPU) to ``path`` with the dynamo exporter and write metadata."""
    if model.config is None:
        raise ValueError("model has no config; build it with M3DHMR.from_config before exporting")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = ExportWrapper(model.float().cpu().eval()).eval()
    rows = torch.export.Dim("rows", min=1, max=1024)
    crops = torch.export.Dim("crops", min=1, max=1024)
    input_names = input_names_for(model.config)
    output_names = output_names_for(model.config)
    dynamic_shapes = ({0: crops if name == "crops" else rows} for name in input_names)
    with torch.no_grad():
        program = torch.onnx.export(
            wrapper,
            example_inputs(3, model.crop_size, model.config, crops=2),
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


PARITY_TOLERANCE_M: float = 1e-3
"""Largest accepted torch/onnxruntime difference of any camera-space vertex or joint, metres."""


class OnnxParityError(RuntimeError):
    """The exported graph gives non-finite outputs, or outputs that differ from the torch model."""


def cue_variants(config: M3DHMRConfig) -> dict[str, dict[str, float]]:
    """The input masks the app feeds per cue: ``{variant: {mask input name: value}}``.

    ``network``: the network's own 2D joints, no landmarks; ``mediapipe``: external 2D joints only;
    ``fused``: external 2D joints and 3D landmarks; ``fused_size_given``: also the user's hand length.
    Variants a config cannot take are left out.
    """
    variants: dict[str, dict[str, float]] = {"network": {"external_mask": 0.0}, "mediapipe": {"external_mask": 1.0}}
    if config.fused_cue:
        variants = {name: {**masks, "landmarks_3d_mask": 0.0} for name, masks in variants.items()}
        variants["fused"] = {"external_mask": 1.0, "landmarks_3d_mask": 1.0}
    if config.predict_scale:
        variants = {name: {**masks, "hand_length_mask": 0.0} for name, masks in variants.items()}
        if config.fused_cue:
            variants["fused_size_given"] = {"external_mask": 1.0, "landmarks_3d_mask": 1.0, "hand_length_mask": 1.0}
    return variants


def check_cue_parity(model: M3DHMR, path: Path | str, batch: int = 3) -> dict[str, float]:
    """Run the exported graph (onnxruntime, CPU) and the torch model on the same inputs for every
    :func:`cue_variants` variant (masked landmarks are zeros, as the app's backend feeds them), and for
    ``shared_crop``: one crop read by every row (``crop_index`` all 0) under the variants' masks in turn,
    as the app's depth ensemble feeds it; return ``{variant: max |difference| of vertices_cam and
    joints_cam, metres}``.

    Raises:
        OnnxParityError: a variant's onnxruntime output is non-finite where torch's is finite, or differs
            by more than :data:`PARITY_TOLERANCE_M`.
    """
    import numpy as np
    import onnxruntime as ort

    assert model.config is not None
    wrapper = ExportWrapper(model.eval())
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    base = dict(zip(wrapper.input_names, example_inputs(batch, model.crop_size, model.config)))
    base["joints_2d_external"] = hand_like_joints(batch, model.crop_size)
    variants = cue_variants(model.config)
    shared = dict(base, crops=base["crops"][:1], crop_index=torch.zeros(batch, dtype=torch.int64))
    row_masks = [list(variants.values())[r % len(variants)] for r in range(batch)]
    for name in dict.fromkeys(name for masks in variants.values() for name in masks):
        shared[name] = torch.tensor([masks.get(name, 0.0) for masks in row_masks])
    report: dict[str, float] = {}
    for variant, masks in [*variants.items(), ("shared_crop", {})]:
        inputs = dict(base) if masks else shared
        for name, value in masks.items():
            inputs[name] = torch.full((batch,), value)
        if masks.get("landmarks_3d_mask") == 0.0:
            inputs["landmarks_3d"] = torch.zeros(batch, NUM_JOINTS, 3)  # what the app feeds without landmarks
        with torch.no_grad():
            ours = dict(zip(wrapper.output_names, wrapper(*(inputs[n] for n in wrapper.input_names))))
        feeds = {n: inputs[n].numpy() if n == CROP_INDEX_INPUT else inputs[n].numpy().astype(np.float32)
                 for n in wrapper.input_names}
        theirs = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
        worst = 0.0
        for name in ("vertices_cam", "joints_cam"):
            ref, got = ours[name].numpy(), np.asarray(theirs[name])
            if not np.isfinite(got).all():
                raise OnnxParityError(f"{path}: cue {variant}: onnxruntime's {name} is not finite "
                                      f"(torch's is {'finite' if np.isfinite(ref).all() else 'not finite either'})")
            worst = max(worst, float(np.abs(got - ref).max()))
        if worst > PARITY_TOLERANCE_M:
            raise OnnxParityError(f"{path}: cue {variant}: onnxruntime differs from torch by {worst * 1e3:.3f} mm "
                                  f"(> {PARITY_TOLERANCE_M * 1e3:.1f} mm)")
        report[variant] = worst
    return report


def hand_like_joints(batch: int, crop_size: int) -> Tensor:
    """``(batch, 21, 2)`` crop px: a fan of five fingers around the crop centre with a fixed small jitter
    per row (spread out, so that DGP is well conditioned); parity checks and tests feed these."""
    angles = torch.linspace(-1.1, 1.1, 5)
    radii = torch.tensor([0.12, 0.22, 0.30, 0.38]) * crop_size
    fingers = torch.stack([torch.stack([r * torch.sin(angles), -r * torch.cos(angles)], -1) for r in radii], 1)
    joints = torch.cat([torch.zeros(1, 2), fingers.reshape(20, 2)]) + torch.tensor([0.5, 0.75]) * crop_size
    jitter = torch.randn(batch, NUM_JOINTS, 2, generator=torch.Generator().manual_seed(7)) * (0.01 * crop_size)
    return joints.unsqueeze(0) + jitter


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
    parity = check_cue_parity(model, out)
    print("torch/onnxruntime parity, max |difference| per cue: "
          + ", ".join(f"{cue} {diff * 1e3:.4f} mm" for cue, diff in parity.items()))


if __name__ == "__main__":
    main()
