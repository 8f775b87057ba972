"""Render the bundled sample clip: `python -m training.make_sample_clip` -> assets/sample_clip.mp4.

Our own hand model (a right hand, palm toward the camera, with a forearm) moves through the named poses
(open palm, fist, point, victory, OK, thumbs up, pinch, open palm) in front of a procedural room,
7 s at 25 fps, 640x360, mp4v. The app plays it when no camera is present. Deterministic (fixed seeds);
the camera has a 60 degree horizontal field of view (K is printed and stored next to the clip as JSON).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from models.hand.poses import named_pose
from models.paths import ASSETS_DIR
from training.synth.primitives import axis_angle_to_matrix, transform_points
from training.synth.render import DirectionalLight, Lighting, MeshLayer, render_layers
from training.synth.scene import LABEL_HAND, SceneGenerator
from training.synth.skin import SkinTone, skin_albedo

WIDTH, HEIGHT, FPS, SECONDS = 640, 360, 25, 7.0
HFOV_DEG = 60.0
POSE_SEQUENCE: tuple[str, ...] = ("open_palm", "fist", "point", "victory", "ok", "thumbs_up", "pinch", "open_palm")


def clip_intrinsics() -> np.ndarray:
    """(3, 3) intrinsics of the clip's virtual camera."""
    fx = WIDTH / 2.0 / np.tan(np.deg2rad(HFOV_DEG) / 2.0)
    return np.array([[fx, 0.0, (WIDTH - 1) / 2.0], [0.0, fx, (HEIGHT - 1) / 2.0], [0.0, 0.0, 1.0]])


def pose_at(t: float) -> np.ndarray:
    """(22,) pose at time t seconds: hold each named pose, then ease into the next."""
    segment = SECONDS / (len(POSE_SEQUENCE) - 1)
    k = min(int(t // segment), len(POSE_SEQUENCE) - 2)
    u = np.clip((t - k * segment) / segment, 0.0, 1.0)
    w = 0.5 - 0.5 * np.cos(np.pi * np.clip((u - 0.35) / 0.65, 0.0, 1.0))
    return (1.0 - w) * named_pose(POSE_SEQUENCE[k]) + w * named_pose(POSE_SEQUENCE[k + 1])


def render_clip(out_path: Path) -> np.ndarray:
    """Write the clip; returns the intrinsics used."""
    generator = SceneGenerator()
    K = clip_intrinsics()
    background = generator.backgrounds.sample(np.random.default_rng(2024), WIDTH, HEIGHT, kind="room", person=False)
    tone = SkinTone(base_bgr=np.array([0.58, 0.69, 0.86], np.float32), darkness=0.3, specular=0.12, shininess=18.0, texture_noise=0.04)
    albedo = skin_albedo(tone, generator.skin_layout, np.random.default_rng(7))
    lighting = Lighting(
        lights=(
            DirectionalLight(np.array([-0.4, -0.6, -0.7]), np.array([0.62, 0.66, 0.7])),
            DirectionalLight(np.array([0.8, 0.1, -0.4]), np.array([0.16, 0.15, 0.13])),
        ),
        ambient_sky_bgr=np.array([0.42, 0.42, 0.42]),
        ambient_ground_bgr=np.array([0.3, 0.29, 0.28]),
        wrap=0.35,
    )
    shape = np.zeros(4, np.float32)
    forearm_dir = np.array([0.0, -1.0, 0.0])
    palm_to_camera = axis_angle_to_matrix(np.array([0.0, 1.0, 0.0]), np.pi) @ np.diag([1.0, -1.0, -1.0])
    writer = cv2.VideoWriter(str(out_path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write mp4v video to {out_path}")
    forearm_rng_seed = 5
    for index in range(int(SECONDS * FPS)):
        t = index / FPS
        verts_h, joints_h = generator.pose_hand(pose_at(t), shape)
        roll = axis_angle_to_matrix(np.array([0.0, 0.0, 1.0]), np.deg2rad(12.0 * np.sin(0.9 * t)))
        yaw = axis_angle_to_matrix(np.array([0.0, 1.0, 0.0]), np.deg2rad(15.0 * np.sin(0.6 * t + 0.5)))
        rotation = roll @ yaw @ palm_to_camera
        depth = 0.5 + 0.04 * np.sin(0.5 * t)
        centre_px = np.array([WIDTH / 2 + 70.0 * np.sin(0.8 * t), HEIGHT / 2 + 10.0 + 12.0 * np.sin(1.3 * t), 1.0])
        centre_cam = depth * (np.linalg.inv(K) @ centre_px)
        translation = centre_cam - rotation @ joints_h.mean(axis=0)
        hand = MeshLayer(transform_points(verts_h, rotation, translation), generator.faces_right, albedo,
                         specular=tone.specular, shininess=tone.shininess, label=LABEL_HAND, texture_noise=tone.texture_noise)
        forearm = generator.forearm_layers(np.random.default_rng(forearm_rng_seed), tone, rotation, translation, forearm_dir, 1.0, True)
        result = render_layers([hand, *forearm[:1]], K, (WIDTH, HEIGHT), lighting, np.random.default_rng(1))
        alpha = result.alpha[..., None]
        frame = background.astype(np.float32) / 255.0 * (1.0 - alpha) + np.clip(result.color_bgr, 0.0, 1.0) * alpha
        frame_u8 = (frame * 255.0 + 0.5).astype(np.uint8)
        writer.write(frame_u8)
    writer.release()
    return K


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ASSETS_DIR / "sample_clip.mp4")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    K = render_clip(args.out)
    meta = {"width": WIDTH, "height": HEIGHT, "image_size": [WIDTH, HEIGHT], "fps": FPS, "hfov_deg": HFOV_DEG, "K": K.tolist(), "poses": list(POSE_SEQUENCE)}
    args.out.with_suffix(".json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB, {int(SECONDS * FPS)} frames) and {args.out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
