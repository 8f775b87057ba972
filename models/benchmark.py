"""Network benchmark: size, multiply-adds, torch/onnxruntime latency per preset, DGP vs iterative registration.

Command:  python -m models.benchmark [--presets realtime_slim paper_r18 paper_r34] [--threads 2] [--json out.json]

Latency: warm-up runs, then ``--runs`` timed runs with ``perf_counter`` (CUDA synchronised), p50/p95 in ms
for batch sizes 1, 2, 8 (per call and per hand), and ``ensemble``: one hand as the app's default fused cue
runs it (``app.pipeline.infer_with_depth_ensemble``: three rows, one per cue, reading one crop, so the
encoder runs once). Multiply-adds are counted with
``torch.utils.flop_counter`` (convolutions, matmuls, einsums; 1 MAC = 2 FLOPs) for ONE hand.
Networks are untrained (weights do not change the cost). DGP vs registration uses the same noisy
synthetic 2D-3D correspondences of the hand asset's joints seen by rectified virtual cameras.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from models.config import PRESETS, M3DHMRConfig, get_preset
from models.dgp import solve_translation
from models.m3dhmr import M3DHMR
from models.rectify import rectification_from_box
from models.registration_baseline import register_root

PAPER_REFERENCE: dict[str, str] = {
    "paper_r18": "M3DHMR paper, Stack-ResNet18: PA-MPJPE 6.6 mm, PA-MPVPE 6.7 mm, 42 FPS (GPU); params/MACs not given in our paper summary",
    "paper_r34": "M3DHMR paper, Stack-ResNet34: PA-MPJPE 6.5 mm, PA-MPVPE 6.6 mm, F@5 0.739, F@15 0.980, 28 FPS (GPU)",
}


def percentiles(samples: list[float]) -> dict[str, float]:
    values = np.asarray(samples) * 1e3
    return {"p50_ms": float(np.percentile(values, 50)), "p95_ms": float(np.percentile(values, 95))}


def time_calls(fn: Callable[[], Any], runs: int, warmup: int, sync: Callable[[], None] = lambda: None) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    sync()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        sync()
        samples.append(time.perf_counter() - start)
    return percentiles(samples)


def network_inputs(batch: int, crop_size: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(batch)
    focal, centre = 2.5 * crop_size, (crop_size - 1) / 2.0
    k_virt = torch.tensor([[focal, 0.0, centre], [0.0, focal, centre], [0.0, 0.0, 1.0]]).expand(batch, 3, 3).contiguous()
    crops = torch.rand(batch, 3, crop_size, crop_size, generator=generator)
    return crops.to(device), k_virt.to(device), torch.eye(3).expand(batch, 3, 3).contiguous().to(device)


def count_macs(model: M3DHMR) -> int:
    crops, k_virt, _ = network_inputs(1, model.crop_size, torch.device("cpu"))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(crops, k_virt)
    return int(counter.get_total_flops() // 2)


def bench_torch(model: M3DHMR, batches: list[int], runs: int, warmup: int, device: torch.device) -> dict[str, Any]:
    model = model.to(device).eval()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    results = {}
    for batch in batches:
        crops, k_virt, virt_to_cam = network_inputs(batch, model.crop_size, device)
        with torch.inference_mode():
            stats = time_calls(lambda: model(crops, k_virt, virt_to_cam=virt_to_cam), runs, warmup, sync)
        results[str(batch)] = {**stats, "per_hand_p50_ms": stats["p50_ms"] / batch}
    crops, k_virt, virt_to_cam = network_inputs(3, model.crop_size, device)
    index = torch.zeros(3, dtype=torch.int64, device=device)
    with torch.inference_mode():
        stats = time_calls(lambda: model(crops[:1], k_virt, virt_to_cam=virt_to_cam, crop_index=index), runs, warmup, sync)
    results["ensemble"] = {**stats, "per_hand_p50_ms": stats["p50_ms"]}
    model.to("cpu")
    return results


def bench_onnx(model: M3DHMR, batches: list[int], runs: int, warmup: int, threads: int) -> dict[str, Any]:
    import onnxruntime as ort

    from models.export_onnx import example_inputs, export_onnx, input_names_for

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        path = export_onnx(model, Path(folder) / "net.onnx")
        offered = ort.get_available_providers()
        provider_sets = [["CPUExecutionProvider"]]
        for gpu_provider in ("CUDAExecutionProvider", "TensorrtExecutionProvider"):
            if gpu_provider in offered and torch.cuda.is_available():
                provider_sets.append([gpu_provider, "CPUExecutionProvider"])
        for providers in provider_sets:
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
            per_batch = {}
            assert model.config is not None
            names = input_names_for(model.config)
            for batch in [*batches, "ensemble"]:
                rows = 3 if batch == "ensemble" else int(batch)
                crops, k_virt, virt_to_cam = network_inputs(rows, model.crop_size, torch.device("cpu"))
                extra = example_inputs(rows, model.crop_size, model.config)[5:]  # landmarks, hand length, crop_index
                values = (crops.numpy(), k_virt.numpy(), virt_to_cam.numpy(), np.zeros((rows, 21, 2), np.float32),
                          np.zeros(rows, np.float32), *(t.numpy() for t in extra))
                feeds = dict(zip(names, values))
                if batch == "ensemble":
                    feeds["crops"], feeds["crop_index"] = feeds["crops"][:1], np.zeros(3, np.int64)
                    feeds["external_mask"] = np.array([1.0, 1.0, 0.0], np.float32)
                stats = time_calls(lambda: session.run(None, feeds), runs, warmup)
                per_batch[str(batch)] = {**stats, "per_hand_p50_ms": stats["p50_ms"] / (1 if batch == "ensemble" else rows)}
            results[providers[0]] = per_batch
    return results


def synthetic_correspondences(hands: int, pixel_noise: float, joint_noise_m: float, seed: int = 0) -> dict[str, np.ndarray]:
    """Asset joints (or a 21-point hand-sized cloud) under random rotations/positions, seen by rectified crops."""
    rng = np.random.default_rng(seed)
    try:
        from models.hand.asset import load_hand_asset

        asset = load_hand_asset()
        joints = np.asarray(asset.joint_regressor, np.float64) @ np.asarray(asset.template_vertices, np.float64)
    except (OSError, ImportError, ValueError):
        joints = rng.normal(scale=0.04, size=(21, 3))
    joints = joints - joints[0]
    intrinsics = np.array([[900.0, 0.0, 640.0], [0.0, 900.0, 360.0], [0.0, 0.0, 1.0]])
    rotations = np.linalg.qr(rng.normal(size=(hands, 3, 3)))[0]
    rotations *= np.sign(np.linalg.det(rotations))[:, None, None]
    rel = np.einsum("hij,nj->hni", rotations, joints)
    translation = np.stack([rng.uniform(-0.25, 0.25, hands), rng.uniform(-0.15, 0.15, hands), rng.uniform(0.35, 0.9, hands)], -1)
    cam = rel + translation[:, None]
    pixels = cam @ intrinsics.T
    pixels = pixels[..., :2] / pixels[..., 2:]
    boxes = np.concatenate([pixels.min(1), pixels.max(1)], -1)
    rect = rectification_from_box(np.broadcast_to(intrinsics, (hands, 3, 3)), boxes, crop_size=128)
    virt = np.einsum("hij,hnj->hni", rect.virt_from_cam, cam)
    crop_px = virt @ np.swapaxes(rect.K_virt, 1, 2)
    crop_px = crop_px[..., :2] / crop_px[..., 2:]
    rel_virt = virt - virt[:, :1]
    return {
        "rel_virt": rel_virt + rng.normal(scale=joint_noise_m, size=rel_virt.shape) * (np.arange(21) > 0)[None, :, None],
        "crop_px": crop_px + rng.normal(scale=pixel_noise, size=crop_px.shape),
        "K_virt": rect.K_virt,
        "t_true": virt[:, 0],
    }


class _DGPModule(torch.nn.Module):
    """DGP alone, for timing it as deployed (inside an ONNX Runtime graph)."""

    def forward(self, rel: torch.Tensor, px: torch.Tensor, k: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, ...]:
        solution = solve_translation(rel, px, k, w)
        return solution.translation, solution.residual


def time_dgp_onnx(rel: torch.Tensor, px: torch.Tensor, k_virt: torch.Tensor, weights: torch.Tensor) -> dict[str, float]:
    """p50/p95 of one single-hand DGP solve in onnxruntime (float32, 1 thread)."""
    import onnxruntime as ort

    args = tuple(x[:1].float() for x in (rel, px, k_virt, weights))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "dgp.onnx"
        program = torch.onnx.export(_DGPModule(), args, dynamo=True, optimize=True, verify=False)
        program.save(str(path))
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        feeds = {i.name: a.numpy() for i, a in zip(session.get_inputs(), args)}
        return time_calls(lambda: session.run(None, feeds), runs=500, warmup=50)


def bench_root_recovery(hands: int, pixel_noise: float, joint_noise_m: float) -> dict[str, Any]:
    """DGP (torch, 1 thread: tiny tensors) vs the iterative registration on identical data; errors in mm."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    data = synthetic_correspondences(hands, pixel_noise, joint_noise_m)
    rel, px, k_virt, truth = (torch.from_numpy(data[k]) for k in ("rel_virt", "crop_px", "K_virt", "t_true"))
    weights = torch.ones(rel.shape[:2], dtype=rel.dtype)
    dgp_t = solve_translation(rel, px, k_virt, weights).translation
    batched = time_calls(lambda: solve_translation(rel, px, k_virt, weights), runs=20, warmup=3)
    single = time_calls(lambda: solve_translation(rel[:1], px[:1], k_virt[:1], weights[:1]), runs=200, warmup=20)
    onnx_single = time_dgp_onnx(rel, px, k_virt, weights)
    torch.set_num_threads(threads)
    start = time.perf_counter()
    reg_t = np.stack([register_root(data["rel_virt"][h], data["crop_px"][h], data["K_virt"][h]).translation for h in range(hands)])
    reg_time = (time.perf_counter() - start) / hands
    dgp_err = torch.linalg.norm(dgp_t - truth, dim=-1).numpy() * 1e3
    reg_err = np.linalg.norm(reg_t - data["t_true"], axis=-1) * 1e3
    return {
        "hands": hands,
        "pixel_noise_px": pixel_noise,
        "joint_noise_mm": joint_noise_m * 1e3,
        "dgp_error_mm_mean": float(dgp_err.mean()),
        "dgp_error_mm_median": float(np.median(dgp_err)),
        "registration_error_mm_mean": float(reg_err.mean()),
        "registration_error_mm_median": float(np.median(reg_err)),
        "dgp_ms_per_hand_batched": batched["p50_ms"] / hands,
        "dgp_ms_per_hand_single_call": single["p50_ms"],
        "dgp_ms_single_hand_onnxruntime": onnx_single["p50_ms"],
        "registration_ms_per_hand": reg_time * 1e3,
        "speedup_batched": reg_time * 1e3 / (batched["p50_ms"] / hands),
        "speedup_single_call": reg_time * 1e3 / single["p50_ms"],
        "speedup_single_hand_onnxruntime": reg_time * 1e3 / onnx_single["p50_ms"],
    }


def hardware_header(threads: int) -> dict[str, Any]:
    import onnxruntime as ort

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return {
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "threads": threads,
        "load_average_1min": os.getloadavg()[0],
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "ort_providers": ort.get_available_providers(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def format_latency(stats: dict[str, Any]) -> str:
    return "  ".join(f"{'b' + b if b.isdigit() else b}: {s['p50_ms']:.2f}/{s['p95_ms']:.2f} ms ({s['per_hand_p50_ms']:.2f}/hand)"
                     for b, s in stats.items())


def benchmark_preset(config: M3DHMRConfig, args: argparse.Namespace) -> dict[str, Any]:
    torch.manual_seed(0)
    model = M3DHMR.from_config(config).eval()
    entry: dict[str, Any] = {
        "params": sum(p.numel() for p in model.parameters()),
        "macs_per_hand": count_macs(model),
        "torch_cpu": bench_torch(model, args.batches, args.runs, args.warmup, torch.device("cpu")),
    }
    if torch.cuda.is_available():
        entry["torch_cuda"] = bench_torch(model, args.batches, args.runs, args.warmup, torch.device("cuda"))
    if not args.no_onnx:
        entry["onnxruntime"] = bench_onnx(model, args.batches, args.runs, args.warmup, args.threads)
    return entry


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 2, 8], help="batch sizes timed (hands)")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="torch and onnxruntime intra-op threads")
    parser.add_argument("--hands", type=int, default=300, help="synthetic hands for DGP vs registration")
    parser.add_argument("--no-onnx", action="store_true")
    parser.add_argument("--json", type=Path, help="also write all numbers to this JSON file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    report: dict[str, Any] = {"hardware": hardware_header(args.threads), "presets": {}}
    print("hardware:", json.dumps(report["hardware"]))
    for name in args.presets:
        entry = benchmark_preset(get_preset(name), args)
        report["presets"][name] = entry
        print(f"\n[{name}] params {entry['params'] / 1e6:.2f} M, multiply-adds {entry['macs_per_hand'] / 1e9:.3f} G per hand")
        print("  torch cpu   p50/p95:", format_latency(entry["torch_cpu"]))
        if "torch_cuda" in entry:
            print("  torch cuda  p50/p95:", format_latency(entry["torch_cuda"]))
        for provider, stats in entry.get("onnxruntime", {}).items():
            print(f"  ort {provider.replace('ExecutionProvider', '')} p50/p95:", format_latency(stats))
        print("  ensemble = one hand with the fused cue's depth ensemble (the app's default: 3 rows, 1 crop); "
              "b1 = one hand, one cue")
        if name in PAPER_REFERENCE:
            print("  paper:", PAPER_REFERENCE[name])
    print("\n[root recovery] same noisy synthetic correspondences (virtual 128 px crops)")
    scenarios = []
    for pixel_noise, joint_noise in ((1.0, 0.003), (2.0, 0.005)):
        result = bench_root_recovery(args.hands, pixel_noise, joint_noise)
        scenarios.append(result)
        print(
            f"  noise {pixel_noise:.1f} px + {joint_noise * 1e3:.0f} mm: "
            f"DGP {result['dgp_error_mm_mean']:.1f} mm (median {result['dgp_error_mm_median']:.1f}), "
            f"{result['dgp_ms_per_hand_batched'] * 1e3:.2f} us/hand batched, {result['dgp_ms_per_hand_single_call'] * 1e3:.0f} us single torch call, "
            f"{result['dgp_ms_single_hand_onnxruntime'] * 1e3:.0f} us single hand in onnxruntime | "
            f"registration {result['registration_error_mm_mean']:.1f} mm (median {result['registration_error_mm_median']:.1f}), "
            f"{result['registration_ms_per_hand']:.2f} ms/hand | speed-up x{result['speedup_batched']:.0f} batched, "
            f"x{result['speedup_single_call']:.0f} single torch call, x{result['speedup_single_hand_onnxruntime']:.0f} single hand onnxruntime"
        )
    report["root_recovery"] = scenarios
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
