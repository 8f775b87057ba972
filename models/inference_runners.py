"""One network call (M3DHMR + DGP) in the execution modes a GPU deployment chooses between.

Modes (``MODES``):

``eager``           plain PyTorch, one kernel launch per op;
``graphs``          the eager call captured once into a CUDA graph and replayed (CUDA only; inputs are copied
                    into static buffers, so every input shape needs its own runner);
``compile``         ``torch.compile`` (Inductor by default; ``dynamic=False``: one compilation per batch size);
``compile-graphs``  ``torch.compile(mode="reduce-overhead")``: Inductor kernels replayed as CUDA graphs.

Precisions (``PRECISIONS``): ``fp32`` (no autocast), ``bf16`` and ``fp16`` (``torch.autocast`` around the
whole call, as training runs it; outputs are cast back to float32). Autocast runs with
``cache_enabled=False``, which CUDA graph capture requires.

Every runner takes the exported graph's inputs, in the order of
``models.export_onnx.input_names_for(config)`` (:func:`example_inputs` builds them; the app's
``BackendRequest.network_feeds`` gives them for real hands): crops ``(B,3,S,S)`` RGB in [0, 1], ``K_virt
(R,3,3)``, ``virt_to_cam (R,3,3)``, ``joints_2d_external (R,21,2)`` crop px, ``external_mask (R,)``, then for
fused models ``landmarks_3d (R,21,3)`` m and ``landmarks_3d_mask (R,)``, for scale models ``hand_length (R,)``
m and ``hand_length_mask (R,)``, and ``crop_index (R,)`` int64 (row r reads crop ``crop_index[r]``). It
returns a dict of the graph's outputs (``models.export_onnx.output_names_for(config)``; ``RUNNER_OUTPUTS``
first). Outputs of ``graphs``/``compile-graphs`` runners live in static buffers that the next call
overwrites: copy what you keep.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from models import export_onnx
from models.config import NUM_JOINTS, M3DHMRConfig
from models.export_onnx import OUTPUT_NAMES, ExportWrapper, hand_like_joints, input_names_for
from models.m3dhmr import M3DHMR

MODES: tuple[str, ...] = ("eager", "graphs", "compile", "compile-graphs")
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
RUNNER_OUTPUTS: tuple[str, ...] = OUTPUT_NAMES
"""The ONNX graph's base outputs, same names and order (``models.export_onnx.OUTPUT_NAMES``); scale models
add ``hand_length_pred`` and ``hand_length_used``."""


class RunnerError(RuntimeError):
    """A mode cannot run here (CUDA graphs without CUDA, an unknown mode or precision)."""


class NetworkCall(nn.Module):
    """Flat-tensor call of :class:`M3DHMR` (the exported graph's inputs and outputs,
    ``models.export_onnx.ExportWrapper``) under an optional autocast; float outputs returned as float32."""

    def __init__(self, model: M3DHMR, precision: str = "fp32") -> None:
        super().__init__()
        if precision not in PRECISIONS:
            raise RunnerError(f"unknown precision {precision!r}; choose one of {sorted(PRECISIONS)}")
        if model.config is None:
            raise RunnerError("the model has no config; build it with M3DHMR.from_config or load_checkpoint")
        self.wrapper = ExportWrapper(model)
        self.precision = precision

    def forward(self, *inputs: Tensor) -> dict[str, Tensor]:
        dtype = PRECISIONS[self.precision]
        with torch.autocast(device_type=inputs[0].device.type, dtype=dtype or torch.float32, enabled=dtype is not None,
                            cache_enabled=False):
            outputs = self.wrapper(*inputs)
        return {name: value.float() if value.is_floating_point() else value
                for name, value in zip(self.wrapper.output_names, outputs)}


def example_inputs(config: M3DHMRConfig, hands: int, device: torch.device | str, seed: int = 0,
                   crops: Tensor | None = None, ensemble: bool = False) -> tuple[Tensor, ...]:
    """Inputs of one call for ``hands`` hands as the app feeds its default cue (``input_names_for(config)``
    order): random crops (or the given ``(hands,3,S,S)`` crops; never time on zeros), a centred ``K_virt``
    with focal 2.5 S, identity ``virt_to_cam``, a hand-like fan of external 2D joints, random hand-sized
    landmarks, the hand length left to the network. Every row uses the external joints and, on fused
    models, the landmarks. ``ensemble``: three rows per hand reading its crop (fused, 2D only, image only:
    ``app.pipeline.infer_with_depth_ensemble``)."""
    generator = torch.Generator().manual_seed(seed + hands)
    s = config.crop_size
    rows = 3 * hands if ensemble else hands
    named = dict(zip(input_names_for(config), export_onnx.example_inputs(rows, s, config, crops=hands)))
    named["crops"] = torch.rand(hands, 3, s, s, generator=generator) if crops is None else crops
    named["joints_2d_external"] = hand_like_joints(rows, s) + (torch.rand(rows, NUM_JOINTS, 2, generator=generator) - 0.5)
    named["external_mask"] = torch.ones(rows)
    if "landmarks_3d" in named:
        named["landmarks_3d"] = (torch.rand(rows, NUM_JOINTS, 3, generator=generator) - 0.5) * 0.15
        named["landmarks_3d_mask"] = torch.ones(rows)
    named["crop_index"] = torch.arange(rows, dtype=torch.int64) % hands
    if ensemble:
        named["external_mask"] = torch.tensor([1.0, 1.0, 0.0]).repeat_interleave(hands)
        if "landmarks_3d_mask" in named:
            named["landmarks_3d_mask"] = torch.tensor([1.0, 0.0, 0.0]).repeat_interleave(hands)
    return tuple(named[name].to(device).contiguous() for name in input_names_for(config))


@dataclass
class Runner:
    """A prepared network call: ``runner(inputs) -> dict of the graph's outputs``.

    ``shapes``: the input shapes it was prepared for (every call must match them); ``prepare_s``: seconds
    spent preparing (graph capture, compilation with its first calls).
    """

    mode: str
    precision: str
    shapes: tuple[tuple[int, ...], ...]
    device: torch.device
    prepare_s: float
    _call: Callable[[tuple[Tensor, ...]], dict[str, Tensor]]

    @property
    def batch(self) -> int:
        """Crops per call."""
        return self.shapes[0][0]

    def __call__(self, inputs: tuple[Tensor, ...]) -> dict[str, Tensor]:
        shapes = tuple(tuple(t.shape) for t in inputs)
        if shapes != self.shapes:
            raise RunnerError(f"this {self.mode} runner was prepared for inputs of shapes {self.shapes}, got {shapes}")
        return self._call(inputs)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_runner(
    model: M3DHMR,
    mode: str,
    precision: str,
    example: tuple[Tensor, ...],
    *,
    compile_backend: str = "inductor",
    warmup: int = 3,
) -> Runner:
    """Prepare ``model`` (eval mode, on the inputs' device) for ``mode``/``precision`` at the shapes of ``example``.

    Raises:
        RunnerError: unknown mode/precision, or ``graphs``/``compile-graphs`` without CUDA.
    """
    if mode not in MODES:
        raise RunnerError(f"unknown mode {mode!r}; choose one of {MODES}")
    device = example[0].device
    if mode in ("graphs", "compile-graphs") and device.type != "cuda":
        raise RunnerError(f"{mode} needs a CUDA device (inputs are on {device})")
    call = NetworkCall(model.eval(), precision).eval()
    shapes = tuple(tuple(t.shape) for t in example)
    t0 = time.perf_counter()
    if mode == "eager":
        def run_eager(inputs: tuple[Tensor, ...]) -> dict[str, Tensor]:
            with torch.inference_mode():
                return call(*inputs)

        return Runner(mode, precision, shapes, device, 0.0, run_eager)
    if mode == "graphs":
        static = tuple(t.clone() for t in example)
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.inference_mode(), torch.cuda.stream(stream):
            for _ in range(max(warmup, 1)):  # side-stream warm-up: lazy init, cuDNN/cuBLAS workspaces
                call(*static)
        torch.cuda.current_stream(device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(graph):
            static_out = call(*static)
        _sync(device)

        def run_graph(inputs: tuple[Tensor, ...]) -> dict[str, Tensor]:
            for dst, src in zip(static, inputs):
                dst.copy_(src, non_blocking=True)
            graph.replay()
            return static_out

        return Runner(mode, precision, shapes, device, time.perf_counter() - t0, run_graph)
    options = {"mode": "reduce-overhead"} if mode == "compile-graphs" else {}
    compiled = torch.compile(call, backend=compile_backend, dynamic=False, fullgraph=False, **options)

    def run_compiled(inputs: tuple[Tensor, ...]) -> dict[str, Tensor]:
        with torch.inference_mode():
            return compiled(*inputs)

    for _ in range(max(warmup, 1)):  # the first call compiles; reduce-overhead records its graph on later ones
        run_compiled(example)
    _sync(device)
    return Runner(mode, precision, shapes, device, time.perf_counter() - t0, run_compiled)
