"""One network call (M3DHMR + DGP) in the execution modes a GPU deployment chooses between.

Modes (``MODES``):

``eager``           plain PyTorch, one kernel launch per op;
``graphs``          the eager call captured once into a CUDA graph and replayed (CUDA only; inputs are copied
                    into static buffers, so every batch size needs its own runner);
``compile``         ``torch.compile`` (Inductor by default; ``dynamic=False``: one compilation per batch size);
``compile-graphs``  ``torch.compile(mode="reduce-overhead")``: Inductor kernels replayed as CUDA graphs.

Precisions (``PRECISIONS``): ``fp32`` (no autocast), ``bf16`` and ``fp16`` (``torch.autocast`` around the
whole call, as training runs it; outputs are cast back to float32). Autocast runs with
``cache_enabled=False``, which CUDA graph capture requires.

Every runner takes the flat inputs of :func:`example_inputs` (the ONNX graph's inputs: crops ``(B,3,S,S)``
RGB in [0, 1], ``K_virt (B,3,3)``, ``virt_to_cam (B,3,3)``, ``joints_2d_external (B,21,2)`` crop px,
``external_mask (B,)`` float, 1 = use the external joints) and returns a dict of ``RUNNER_OUTPUTS``.
Outputs of ``graphs``/``compile-graphs`` runners live in static buffers that the next call overwrites:
copy what you keep.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from models.config import NUM_JOINTS
from models.export_onnx import OUTPUT_NAMES
from models.m3dhmr import M3DHMR

MODES: tuple[str, ...] = ("eager", "graphs", "compile", "compile-graphs")
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
RUNNER_OUTPUTS: tuple[str, ...] = OUTPUT_NAMES
"""The ONNX graph's base outputs, same names and order (``models.export_onnx.OUTPUT_NAMES``)."""


class RunnerError(RuntimeError):
    """A mode cannot run here (CUDA graphs without CUDA, an unknown mode or precision)."""


class NetworkCall(nn.Module):
    """Flat-tensor call of :class:`M3DHMR` under an optional autocast; float outputs returned as float32."""

    def __init__(self, model: M3DHMR, precision: str = "fp32") -> None:
        super().__init__()
        if precision not in PRECISIONS:
            raise RunnerError(f"unknown precision {precision!r}; choose one of {sorted(PRECISIONS)}")
        self.model = model
        self.precision = precision

    def forward(
        self, crops: Tensor, K_virt: Tensor, virt_to_cam: Tensor, joints_2d_external: Tensor, external_mask: Tensor
    ) -> dict[str, Tensor]:
        dtype = PRECISIONS[self.precision]
        with torch.autocast(device_type=crops.device.type, dtype=dtype or torch.float32, enabled=dtype is not None,
                            cache_enabled=False):
            out = self.model(crops, K_virt, joints_2d_external=joints_2d_external, external_mask=external_mask,
                             virt_to_cam=virt_to_cam)
        result = {}
        for name in RUNNER_OUTPUTS:
            value = getattr(out, name)
            result[name] = value.float() if value.is_floating_point() else value
        return result


def example_inputs(batch: int, crop_size: int, device: torch.device | str, seed: int = 0,
                   crops: Tensor | None = None) -> tuple[Tensor, ...]:
    """Inputs of one call for ``batch`` hands: random crops (or the given ``(B,3,S,S)`` crops), a centred
    ``K_virt`` with focal 2.5 S, identity ``virt_to_cam`` and external joints on a plausible hand-sized grid
    (random, not zeros: never time on zeros)."""
    generator = torch.Generator().manual_seed(seed + batch)
    s = crop_size
    focal, centre = 2.5 * s, (s - 1) / 2.0
    k_virt = torch.tensor([[focal, 0.0, centre], [0.0, focal, centre], [0.0, 0.0, 1.0]]).expand(batch, 3, 3).contiguous()
    if crops is None:
        crops = torch.rand(batch, 3, s, s, generator=generator)
    joints = centre + (torch.rand(batch, NUM_JOINTS, 2, generator=generator) - 0.5) * (0.6 * s)
    return (
        crops.to(device).contiguous(),
        k_virt.to(device),
        torch.eye(3).expand(batch, 3, 3).contiguous().to(device),
        joints.to(device),
        torch.ones(batch, device=device),
    )


@dataclass
class Runner:
    """A prepared network call: ``runner(inputs) -> dict of RUNNER_OUTPUTS``.

    ``prepare_s``: seconds spent preparing (graph capture, compilation with its first calls).
    """

    mode: str
    precision: str
    batch: int
    device: torch.device
    prepare_s: float
    _call: Callable[[tuple[Tensor, ...]], dict[str, Tensor]]

    def __call__(self, inputs: tuple[Tensor, ...]) -> dict[str, Tensor]:
        if inputs[0].shape[0] != self.batch:
            raise RunnerError(f"this {self.mode} runner was prepared for batch {self.batch}, got {inputs[0].shape[0]}")
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
    """Prepare ``model`` (eval mode, on the inputs' device) for ``mode``/``precision`` at the batch of ``example``.

    Raises:
        RunnerError: unknown mode/precision, or ``graphs``/``compile-graphs`` without CUDA.
    """
    if mode not in MODES:
        raise RunnerError(f"unknown mode {mode!r}; choose one of {MODES}")
    device = example[0].device
    if mode in ("graphs", "compile-graphs") and device.type != "cuda":
        raise RunnerError(f"{mode} needs a CUDA device (inputs are on {device})")
    call = NetworkCall(model.eval(), precision).eval()
    batch = int(example[0].shape[0])
    t0 = time.perf_counter()
    if mode == "eager":
        def run_eager(inputs: tuple[Tensor, ...]) -> dict[str, Tensor]:
            with torch.inference_mode():
                return call(*inputs)

        return Runner(mode, precision, batch, device, 0.0, run_eager)
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

        return Runner(mode, precision, batch, device, time.perf_counter() - t0, run_graph)
    options = {"mode": "reduce-overhead"} if mode == "compile-graphs" else {}
    compiled = torch.compile(call, backend=compile_backend, dynamic=False, fullgraph=False, **options)

    def run_compiled(inputs: tuple[Tensor, ...]) -> dict[str, Tensor]:
        with torch.inference_mode():
            return compiled(*inputs)

    for _ in range(max(warmup, 1)):  # the first call compiles; reduce-overhead records its graph on later ones
        run_compiled(example)
    _sync(device)
    return Runner(mode, precision, batch, device, time.perf_counter() - t0, run_compiled)
