"""Load a user's MANO_RIGHT.pkl (Romero et al. 2017) without chumpy, as a ``HandAsset``.

The MANO pickle (Python 2, protocol 2) stores some arrays as chumpy ``Ch`` objects and the joint
regressor as a scipy sparse matrix. ``_MANOUnpickler`` maps every chumpy class to a small stand-in that
keeps the pickled state, and the value array (state ``x``) is taken from it, so chumpy is never needed.

Conversion to our interface:
- bones are reordered from MANO's joint order (wrist; index, middle, little, ring, thumb x 3) to ours
  (wrist; thumb, index, middle, ring, little x 3); skinning weights, regressor rows and pose blend
  shapes follow;
- the 21 joints are MANO's 16 regressed joints plus five fingertip vertices (FreiHAND's choice for
  the 778-vertex MANO mesh, or the farthest vertex along each distal bone for other meshes);
- MANO's mesh is open at the wrist; the hole is closed by a fan of triangles over the existing
  boundary vertices (no new vertex), so the faces form the closed manifold the decoder topology needs;
- regions are the argmax of the skinning weights grouped by finger; the decoder topology is built by
  ``models.hand.topology.build_decoder_topology`` (a few seconds).
No MANO data ship with this project.
"""
from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse

from models.hand.anatomy import BONE_JOINTS, BONE_PARENTS, FINGER_BONES, NUM_JOINTS, TIP_BONES, TIP_JOINTS
from models.hand.asset import MANO_ASSET_VERSION, HandAsset, SparseCOO, asset_to_arrays
from models.hand.hierarchy import SparseTriplets
from models.hand.mesh_topology import check_closed_manifold
from models.hand.poses import POSE_LIMITS, dof_axes
from models.hand.topology import build_decoder_topology

# MANO joint index of each of our 16 bones.
MANO_JOINT_OF_BONE: tuple[int, ...] = (0, 13, 14, 15, 1, 2, 3, 4, 5, 6, 10, 11, 12, 7, 8, 9)
MANO_PARENTS: tuple[int, ...] = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14)
# Fingertip vertices (thumb, index, middle, ring, little) of the 778-vertex MANO mesh used by FreiHAND.
MANO_TIP_VERTEX_IDS: tuple[int, ...] = (745, 317, 444, 556, 673)


class MANOLoadError(RuntimeError):
    """The MANO file is missing, unreadable or not in MANO's published structure."""


class MANOUnsafePickleError(MANOLoadError):
    """The pickle asks for a class or function a MANO file never needs (possibly code execution): refused."""


# The only globals a MANO pickle refers to, by (module, name); Python 2 module names are renamed first.
_PY2_MODULES: dict[str, str] = {"__builtin__": "builtins", "copy_reg": "copyreg"}
_ALLOWED_NUMPY: frozenset[tuple[str, str]] = frozenset(
    {("numpy", "ndarray"), ("numpy", "dtype")}
    | {(m, n) for m in ("numpy.core.multiarray", "numpy._core.multiarray") for n in ("_reconstruct", "scalar")}
)
_SPARSE_MODULES: tuple[str, ...] = ("scipy.sparse", "scipy.sparse.csc", "scipy.sparse._csc", "scipy.sparse.csr",
                                    "scipy.sparse._csr", "scipy.sparse.coo", "scipy.sparse._coo")
_SPARSE_CLASSES: frozenset[str] = frozenset({"csc_matrix", "csr_matrix", "coo_matrix"})
_ALLOWED_BUILTINS: frozenset[tuple[str, str]] = frozenset({
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "object"),
    ("copyreg", "_reconstructor"),  # protocol 0/1 new-style objects; cls and base go through find_class too
    ("_codecs", "encode"),          # bytes as written by Python 3's protocol 2
})


class _ChumpyStandIn:
    """Takes the place of any chumpy class during unpickling and keeps the pickled state."""

    def __new__(cls, *args: Any, **kwargs: Any) -> _ChumpyStandIn:
        return super().__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _MANOUnpickler(pickle.Unpickler):
    """Resolves only the globals a MANO file needs; anything else raises :class:`MANOUnsafePickleError`.

    numpy arrays, dtypes and scalars; scipy.sparse csc/csr/coo matrices; chumpy classes (mapped to the
    inert :class:`_ChumpyStandIn`, so no chumpy code runs); set/frozenset and the two helpers the pickle
    protocols use for objects and bytes. ``os.system``, ``builtins.eval``, ``subprocess.Popen`` and the like
    are refused before anything is called.
    """

    def find_class(self, module: str, name: str) -> Any:
        module = _PY2_MODULES.get(module, module)
        if module == "chumpy" or module.startswith("chumpy."):
            if not name.isidentifier():
                raise MANOUnsafePickleError(f"refused chumpy global {module}.{name!r}")
            return _ChumpyStandIn
        if module in _SPARSE_MODULES and name in _SPARSE_CLASSES:
            return getattr(scipy.sparse, name)
        if (module, name) in _ALLOWED_NUMPY or (module, name) in _ALLOWED_BUILTINS:
            return super().find_class(module, name)
        raise MANOUnsafePickleError(
            f"the pickle refers to {module}.{name}, which a MANO model file never contains: refused (a crafted "
            "pickle can run code when loaded). Use the MANO_RIGHT.pkl downloaded from the MANO website."
        )


def _to_array(value: Any, key: str) -> np.ndarray:
    if isinstance(value, _ChumpyStandIn):
        state = value.state
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):
            state = state[1]  # (slotstate, dict) form
        if not isinstance(state, dict) or "x" not in state:
            raise MANOLoadError(f"MANO field {key!r}: unsupported chumpy object (no value array 'x')")
        return _to_array(state["x"], key)
    if scipy.sparse.issparse(value):
        return np.asarray(value.toarray())
    return np.asarray(value)


def read_mano_pickle(path: Path) -> dict[str, Any]:
    """Read a MANO pickle into a dict of numpy arrays (chumpy and scipy objects converted).

    Raises:
        MANOLoadError: missing file, not a pickle, or required keys absent.
        MANOUnsafePickleError: the pickle refers to a class or function outside the MANO allow-list.
    """
    path = Path(path)
    if not path.is_file():
        raise MANOLoadError(f"MANO file not found: {path} (download MANO_RIGHT.pkl from the MANO website)")
    try:
        with path.open("rb") as fh:
            raw = _MANOUnpickler(fh, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError) as err:
        raise MANOLoadError(f"cannot unpickle MANO file {path}: {err}") from err
    if not isinstance(raw, dict):
        raise MANOLoadError(f"{path} is not a MANO model (expected a dict, got {type(raw).__name__})")
    required = ("v_template", "f", "weights", "kintree_table", "J_regressor", "shapedirs")
    missing = [k for k in required if k not in raw]
    if missing:
        raise MANOLoadError(f"{path} is not a MANO model: missing {', '.join(missing)}")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        out[key] = value if isinstance(value, str) else _to_array(value, key)
    return out


def close_holes(faces: np.ndarray) -> np.ndarray:
    """Close every boundary loop of an oriented mesh with a fan of triangles (no new vertices).

    Args:
        faces: (F, 3) int64 oriented faces of a manifold mesh with boundary.
    Returns:
        (F + added, 3) int64 faces.
    """
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    present = {(int(a), int(b)) for a, b in directed}
    # Boundary edges a->b have no twin b->a; the hole is walked in the opposite direction.
    succ = {b: a for a, b in present if (b, a) not in present}
    added = []
    while succ:
        start = min(succ)
        loop = [start]
        cur = succ.pop(start)
        while cur != start:
            loop.append(cur)
            cur = succ.pop(cur)
        for i in range(1, len(loop) - 1):
            added.append((loop[0], loop[i], loop[i + 1]))
    if not added:
        return faces.astype(np.int64)
    return np.concatenate([faces, np.asarray(added, dtype=np.int64)]).astype(np.int64)


def _tip_vertices(vertices: np.ndarray, weights: np.ndarray, joints16: np.ndarray) -> np.ndarray:
    tips = np.zeros(5, dtype=np.int64)
    owner = np.argmax(weights, axis=1)
    for f, bone in enumerate(TIP_BONES):
        parent = BONE_PARENTS[bone]
        direction = joints16[bone] - joints16[parent]
        direction /= np.linalg.norm(direction)
        score = np.where(owner == bone, (vertices - joints16[bone]) @ direction, -np.inf)
        tips[f] = int(np.argmax(score))
    return tips


def _coo(m: SparseTriplets) -> SparseCOO:
    order = np.lexsort((m.cols, m.rows))
    return SparseCOO(np.stack([m.rows[order], m.cols[order]]).astype(np.int64),
                     m.values[order].astype(np.float32), m.shape)


def load_mano_asset(path: Path, tip_vertex_ids: tuple[int, ...] | None = None) -> HandAsset:
    """MANO as a ``HandAsset`` in our conventions (MANO's own frame and units, metres).

    Args:
        path: MANO_RIGHT.pkl. tip_vertex_ids: fingertip vertices (thumb .. little); default: FreiHAND's
            for the 778-vertex MANO mesh, else the farthest vertex along each distal bone.
    Raises:
        MANOLoadError: unreadable file or unexpected structure (not a right-hand MANO layout).
    """
    data = read_mano_pickle(path)
    vertices = data["v_template"].astype(np.float64)
    num_v = len(vertices)
    kintree = data["kintree_table"].astype(np.int64)
    parents = tuple(int(p) if i > 0 else -1 for i, p in enumerate(kintree[0]))
    if parents != MANO_PARENTS:
        raise MANOLoadError(f"{path}: kintree_table {parents} is not MANO's 16-joint hand tree")
    weights_mano = data["weights"].astype(np.float64)
    regressor_mano = data["J_regressor"].astype(np.float64)
    if weights_mano.shape != (num_v, 16) or regressor_mano.shape != (16, num_v):
        raise MANOLoadError(f"{path}: weights {weights_mano.shape} / J_regressor {regressor_mano.shape} do not "
                            f"match {num_v} vertices and 16 joints")
    order = list(MANO_JOINT_OF_BONE)
    weights = weights_mano[:, order]
    joints16 = regressor_mano[order] @ vertices
    if tip_vertex_ids is None:
        tips = (np.asarray(MANO_TIP_VERTEX_IDS) if num_v == 778 else _tip_vertices(vertices, weights, joints16))
    else:
        tips = np.asarray(tip_vertex_ids, dtype=np.int64)
    regressor = np.zeros((NUM_JOINTS, num_v))
    regressor[list(BONE_JOINTS)] = regressor_mano[order]
    regressor[list(TIP_JOINTS), tips] = 1.0
    faces = close_holes(data["f"].astype(np.int64))
    report = check_closed_manifold(num_v, faces)
    if not report.ok:
        raise MANOLoadError(f"{path}: the MANO mesh is not a genus-0 manifold after closing the wrist: {report}")
    region_weight = np.stack([weights[:, 0]] + [weights[:, list(b)].sum(axis=1) for b in FINGER_BONES], axis=1)
    regions = np.argmax(region_weight, axis=1).astype(np.int64)
    shape_dirs = data["shapedirs"].astype(np.float64)
    pose_dirs = None
    if "posedirs" in data:
        mano_pd = data["posedirs"].astype(np.float64)
        cols = [9 * (MANO_JOINT_OF_BONE[b] - 1) + k for b in range(1, 16) for k in range(9)]
        pose_dirs = mano_pd[:, :, cols].astype(np.float32)
    rest_joints = regressor @ vertices
    topo = build_decoder_topology(vertices, faces, regions)
    asset = HandAsset(
        version=MANO_ASSET_VERSION, sha256="", template_vertices=vertices.astype(np.float32), faces=faces,
        joint_regressor=regressor.astype(np.float32), regions=regions,
        level_num_vertices=topo.level_num_vertices, level_faces=topo.level_faces, spirals=topo.spirals,
        down=tuple(_coo(m) for m in topo.down), up=tuple(_coo(m) for m in topo.up), roi_spirals=topo.roi_spirals,
        skin_weights=weights.astype(np.float32), bone_parents=np.asarray(BONE_PARENTS, dtype=np.int64),
        shape_dirs=shape_dirs.astype(np.float32), rest_joints=rest_joints.astype(np.float32), tip_vertex_ids=tips,
        dof_axes=dof_axes(rest_joints).astype(np.float32), pose_limits=POSE_LIMITS, pose_dirs=pose_dirs,
    )
    return dataclasses.replace(asset, sha256=str(asset_to_arrays(asset)["sha256"]))
