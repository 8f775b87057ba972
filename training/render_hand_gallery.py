"""Render the README pictures of the procedural hand: named poses from two views.

    Xvfb :99 -screen 0 1280x1024x24 &   # any X display; the script needs DISPLAY
    DISPLAY=:99 python -m training.render_hand_gallery [--out-dir assets/readme] [--wireframe]

Writes ``hand_poses.png`` (a grid: one column per named pose, rows = palm view and side view) and
``hand_rest.png`` (the rest mesh with its six regions, palm and back). Uses Open3D's legacy Visualizer
with a hidden window (fast under Mesa llvmpipe) and OpenCV for the labels.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import open3d as o3d
import torch

from models.hand.asset import load_hand_asset
from models.hand.model import HandModel
from models.hand.poses import NAMED_POSES, named_pose
from models.paths import ASSETS_DIR

SKIN_RGB = (0.87, 0.70, 0.60)
REGION_RGB = np.array([[0.85, 0.68, 0.58], [0.90, 0.45, 0.35], [0.95, 0.75, 0.30], [0.45, 0.75, 0.45],
                       [0.40, 0.60, 0.90], [0.70, 0.50, 0.85]])
# Camera "front" vectors (from the object towards the camera) and up vectors in the hand frame.
VIEWS = {
    "palm": ((0.12, -0.12, -1.0), (0.0, 1.0, 0.0)),
    "side": ((-1.0, -0.35, 0.45), (0.0, 1.0, 0.0)),
    "back": ((-0.1, -0.2, 1.0), (0.0, 1.0, 0.0)),
}


def render_views(vis: o3d.visualization.Visualizer, vertices: np.ndarray, faces: np.ndarray,
                 colors: np.ndarray | None, views: list[str], wireframe: bool) -> list[np.ndarray]:
    """Render one mesh from the named views; returns RGB uint8 images (H, W, 3)."""
    mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(vertices.astype(np.float64)),
                                     o3d.utility.Vector3iVector(faces.astype(np.int32)))
    mesh.compute_vertex_normals()
    if colors is None:
        mesh.paint_uniform_color(SKIN_RGB)
    else:
        mesh.vertex_colors = o3d.utility.Vector3dVector(colors.astype(np.float64))
    vis.clear_geometries()
    vis.add_geometry(mesh)
    opt = vis.get_render_option()
    opt.mesh_show_wireframe = wireframe
    opt.background_color = np.array([1.0, 1.0, 1.0])
    opt.light_on = True
    images = []
    centre = 0.5 * (vertices.min(0) + vertices.max(0))
    for name in views:
        front, up = VIEWS[name]
        ctr = vis.get_view_control()
        ctr.set_lookat(centre)
        ctr.set_front(front)
        ctr.set_up(up)
        ctr.set_zoom(0.62)
        vis.poll_events()
        vis.update_renderer()
        img = np.asarray(vis.capture_screen_float_buffer(do_render=True))
        images.append((np.clip(img, 0, 1) * 255).astype(np.uint8))
    return images


def _label(img: np.ndarray, text: str) -> np.ndarray:
    out = np.ascontiguousarray(img[..., ::-1])  # RGB -> BGR for OpenCV
    cv2.putText(out, text, (12, 34), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (60, 60, 60), 2, cv2.LINE_AA)
    return out[..., ::-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", type=Path, default=ASSETS_DIR / "readme")
    parser.add_argument("--size", type=int, default=360, help="pixels per tile")
    parser.add_argument("--wireframe", action="store_true")
    args = parser.parse_args(argv)
    if not os.environ.get("DISPLAY"):
        print("render_hand_gallery: set DISPLAY (for example run `Xvfb :99 &` and DISPLAY=:99)", file=sys.stderr)
        return 2
    asset = load_hand_asset()
    hand = HandModel.from_asset(asset)
    faces = asset.faces
    vis = o3d.visualization.Visualizer()
    if not vis.create_window(visible=False, width=args.size, height=args.size):
        print("render_hand_gallery: Open3D could not open a window on DISPLAY", file=sys.stderr)
        return 2
    columns = []
    with torch.no_grad():
        for name in NAMED_POSES:
            verts = hand(torch.from_numpy(named_pose(name))[None]).vertices[0].numpy()
            palm, side = render_views(vis, verts, faces, None, ["palm", "side"], args.wireframe)
            columns.append(np.concatenate([_label(palm, name), side], axis=0))
    rest = render_views(vis, asset.template_vertices, faces, REGION_RGB[asset.regions], ["palm", "back"], True)
    vis.destroy_window()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    grid = np.concatenate(columns, axis=1)
    cv2.imwrite(str(args.out_dir / "hand_poses.png"), grid[..., ::-1])
    cv2.imwrite(str(args.out_dir / "hand_rest.png"), np.concatenate(rest, axis=1)[..., ::-1])
    print(f"wrote {args.out_dir / 'hand_poses.png'} and {args.out_dir / 'hand_rest.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
