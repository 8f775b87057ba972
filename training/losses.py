"""Training losses: the six of M3DHMR plus HandDGP's camera-space loss.

Terms (M3DHMR, which follows CMR/MobRecon for the mesh terms; HandDGP for the camera-space term):

* ``mesh``: L1 between predicted and ground-truth root-relative vertices.
* ``pose2d``: L1 between predicted and ground-truth 2D joints in the crop, in crop-normalised units
  (pixels divided by the crop size).
* ``normal``: for every ground-truth face, ``|cos|`` between each predicted edge of that face and the
  ground-truth face normal (0 when the predicted surface is parallel to the true one).
* ``edge``: L1 between predicted and ground-truth edge lengths over the unique mesh edges.
* ``dihedral`` / ``fold`` (ours, not M3DHMR's): the bend between adjacent faces against the ground
  truth's, and, without ground truth, folds sharper than the rest template's (see :func:`fold_loss`).
* ``consistency3d``: two augmented views ``a`` and ``b`` of one sample; view ``a``'s root-relative
  vertices mapped into view ``b``'s network frame by the known rotation must equal view ``b``'s.
* ``consistency2d``: view ``a``'s 2D joints mapped into view ``b``'s crop by the known homography must
  equal view ``b``'s.
* ``dgp_joints`` / ``dgp_verts``: L1 between camera-space joints / vertices (network output after the
  DGP translation) and the ground truth.
* ``aligned_l1`` (ours): L1 after the similarity (rotation, scale, translation) that best maps the
  predicted joints onto the true ones, as PA-MPJPE aligns them (:func:`procrustes_transform`).

3D quantities are in metres and are divided by ``LossWeights.length_scale_m`` (0.2 m, about a hand
length, as MobRecon normalises) so that 3D and 2D terms have comparable magnitudes. All functions are
batched over the leading dimension, differentiable, and inherit dtype/device from their inputs.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch

from models.mesh_surface import dihedral_cosines
from models.rectify import apply_homography
from training.metrics import procrustes_similarity

LOSS_TERMS: tuple[str, ...] = (
    "mesh",
    "pose2d",
    "normal",
    "edge",
    "consistency3d",
    "consistency2d",
    "dgp_joints",
    "dgp_verts",
)


class LossInputError(ValueError):
    """Raised when loss inputs have inconsistent shapes or a needed quantity is missing."""


@dataclass(frozen=True)
class LossWeights:
    """Per-term weights (dimensionless) and the length scale for 3D terms.

    Defaults: every M3DHMR term with weight 1 except the normal term (0.1, as CMR/MobRecon), and
    HandDGP's camera-space terms with weight 1. A weight of 0 disables a term (it is not computed).
    ``heatmap`` (off by default, not one of the papers' terms) adds KL(target || heatmap) per joint and
    stack, with a Gaussian target of ``heatmap_sigma_px`` crop pixels at the ground-truth joint: a dense
    signal that makes the soft-argmax 2D head learn much faster from scratch than the L1 term alone.
    """

    mesh: float = 1.0
    pose2d: float = 1.0
    normal: float = 0.1
    edge: float = 1.0
    consistency3d: float = 1.0
    consistency2d: float = 1.0
    dgp_joints: float = 1.0
    dgp_verts: float = 1.0
    heatmap: float = 0.0
    heatmap_sigma_px: float = 4.0
    length_scale_m: float = 0.2

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value < 0:
                raise LossInputError(f"loss weight {f.name} must be >= 0, got {value}")
        if self.heatmap_sigma_px <= 0:
            raise LossInputError(f"heatmap_sigma_px must be > 0, got {self.heatmap_sigma_px}")
        if self.length_scale_m <= 0:
            raise LossInputError(f"length_scale_m must be > 0, got {self.length_scale_m}")

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class LossPrediction:
    """What the losses need from one view of the network output.

    verts_rel: ``(B, V, 3)`` root-relative vertices in the view's network (virtual camera) frame, metres.
    joints_uv: ``(B, 21, 2)`` 2D joints in crop pixels (x right, y down).
    verts_cam / joints_cam: ``(B, V, 3)`` / ``(B, 21, 3)`` camera-space points after DGP, metres, or None.
    """

    verts_rel: torch.Tensor
    joints_uv: torch.Tensor
    verts_cam: torch.Tensor | None = None
    joints_cam: torch.Tensor | None = None


@dataclass(frozen=True)
class LossTarget:
    """Ground truth for one view, same frames and units as :class:`LossPrediction`.

    crop_size_px: side of the square crop in pixels (2D terms are divided by it).
    """

    verts_rel: torch.Tensor
    joints_uv: torch.Tensor
    crop_size_px: float
    verts_cam: torch.Tensor | None = None
    joints_cam: torch.Tensor | None = None


@dataclass(frozen=True)
class ViewPair:
    """Known transform from view ``a`` to view ``b`` of the same sample.

    rot_a_to_b: ``(B, 3, 3)`` maps a root-relative point in view a's network frame to view b's
        (may include a mirror, det -1).
    hom_a_to_b: ``(B, 3, 3)`` homography mapping view a's crop pixels to view b's crop pixels.
    """

    rot_a_to_b: torch.Tensor
    hom_a_to_b: torch.Tensor


def _check_same(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    if a.shape != b.shape:
        raise LossInputError(f"{what}: prediction {tuple(a.shape)} and target {tuple(b.shape)} differ")


def l1_points(pred: torch.Tensor, target: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Mean absolute coordinate difference of ``(*, N, D)`` point sets divided by ``scale``; scalar."""
    _check_same(pred, target, "l1_points")
    return (pred - target).abs().mean() / scale


def procrustes_transform(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`training.metrics.procrustes_similarity` of ``pred (B, N, 3)`` onto ``target (B, N, 3)``
    without reflections, computed without gradient in float64 and returned in ``pred``'s dtype: a loss on
    the aligned points then teaches the shape, not the alignment, and never differentiates through an SVD
    whose singular values may coincide."""
    _check_same(pred, target, "procrustes_transform")
    with torch.no_grad():
        transform = procrustes_similarity(pred.detach().double(), target.detach().double(), allow_reflection=False)
    return tuple(part.to(pred.dtype) for part in transform)  # type: ignore[return-value]


def aligned_l1(pred_joints: torch.Tensor, gt_joints: torch.Tensor, scale: float = 1.0,
               pred_verts: torch.Tensor | None = None, gt_verts: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute coordinate difference after mapping the prediction by the joints' Procrustes
    similarity (:func:`procrustes_transform` of ``pred_joints (B, J, 3)`` onto ``gt_joints``), divided by
    ``scale``; with ``pred_verts``/``gt_verts (B, V, 3)`` the same map moves the vertices and the mean runs
    over joints and vertices. Scalar. The root-relative terms pay for every error of the hand's
    orientation and size; this one only for the pose and shape that PA-MPJPE measures."""
    if (pred_verts is None) != (gt_verts is None):
        raise LossInputError("aligned_l1: pass both pred_verts and gt_verts, or neither")
    s, r, t = procrustes_transform(pred_joints, gt_joints)
    diffs = [(s * pred_joints @ r.transpose(1, 2) + t - gt_joints).abs().flatten(1)]
    if pred_verts is not None and gt_verts is not None:
        _check_same(pred_verts, gt_verts, "aligned_l1")
        diffs.append((s * pred_verts @ r.transpose(1, 2) + t - gt_verts).abs().flatten(1))
    return torch.cat(diffs, dim=1).mean() / scale


def mesh_edges(faces: torch.Tensor) -> torch.Tensor:
    """Unique undirected edges ``(E, 2)`` int64 (sorted pairs) of a triangle list ``(F, 3)``."""
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise LossInputError(f"faces must have shape (F, 3), got {tuple(faces.shape)}")
    f = faces.long()
    pairs = torch.cat([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]], dim=0)
    pairs = torch.sort(pairs, dim=1).values
    return torch.unique(pairs, dim=0)


def normal_loss(pred_verts: torch.Tensor, gt_verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Mean ``|cos|`` between predicted face edges and ground-truth face normals; scalar, dimensionless.

    Args:
        pred_verts, gt_verts: ``(B, V, 3)`` metres (any common frame).
        faces: ``(F, 3)`` int64 vertex indices.
    """
    _check_same(pred_verts, gt_verts, "normal_loss")
    f = faces.long()
    g0, g1, g2 = gt_verts[:, f[:, 0]], gt_verts[:, f[:, 1]], gt_verts[:, f[:, 2]]
    n_gt = torch.nn.functional.normalize(torch.cross(g1 - g0, g2 - g0, dim=-1), dim=-1)
    p0, p1, p2 = pred_verts[:, f[:, 0]], pred_verts[:, f[:, 1]], pred_verts[:, f[:, 2]]
    edges = torch.stack([p1 - p0, p2 - p0, p2 - p1], dim=2)  # (B, F, 3 edges, 3)
    edges = torch.nn.functional.normalize(edges, dim=-1)
    return (edges * n_gt[:, :, None, :]).sum(-1).abs().mean()


def edge_length_loss(
    pred_verts: torch.Tensor, gt_verts: torch.Tensor, edges: torch.Tensor, scale: float = 1.0
) -> torch.Tensor:
    """Mean ``| |e_pred| - |e_gt| |`` over edges ``(E, 2)``, divided by ``scale``; scalar."""
    _check_same(pred_verts, gt_verts, "edge_length_loss")
    e = edges.long()
    len_p = torch.linalg.norm(pred_verts[:, e[:, 0]] - pred_verts[:, e[:, 1]], dim=-1)
    len_g = torch.linalg.norm(gt_verts[:, e[:, 0]] - gt_verts[:, e[:, 1]], dim=-1)
    return (len_p - len_g).abs().mean() / scale


def dihedral_loss(pred_verts: torch.Tensor, gt_verts: torch.Tensor, faces: torch.Tensor,
                  adjacency: torch.Tensor) -> torch.Tensor:
    """Mean ``|cos_pred - cos_gt|`` of ``models.mesh_surface.dihedral_cosines`` over the interior edges
    (``adjacency``: ``models.hand.mesh_topology.face_adjacency``, as a tensor); scalar, dimensionless. Zero when every
    crease of the predicted surface bends as the true one does, so a prediction whose vertices are close
    but jittered (a crumpled surface) pays for it."""
    _check_same(pred_verts, gt_verts, "dihedral_loss")
    return (dihedral_cosines(pred_verts, faces, adjacency) - dihedral_cosines(gt_verts, faces, adjacency)).abs().mean()


def fold_loss(pred_verts: torch.Tensor, rest_cosines: torch.Tensor, faces: torch.Tensor, adjacency: torch.Tensor,
              margin: float) -> torch.Tensor:
    """Mean ``relu(cos_rest - cos_pred - margin)`` over the interior edges, for meshes without ground
    truth: a crease may bend up to ``margin`` (in cosine) beyond the rest template's (``rest_cosines
    (P,)``, ``models.mesh_surface.dihedral_cosines`` of the template) for free; sharper folds pay. A
    hand's skin bends smoothly except at a few joint creases, so this mostly removes crumpling."""
    cos = dihedral_cosines(pred_verts, faces, adjacency)
    return torch.relu(rest_cosines.to(cos.dtype) - cos - margin).mean()


def consistency3d_loss(
    verts_a: torch.Tensor, verts_b: torch.Tensor, rot_a_to_b: torch.Tensor, scale: float = 1.0
) -> torch.Tensor:
    """L1 between view a's root-relative vertices rotated into view b and view b's; ``(B, V, 3)``, scalar."""
    mapped = verts_a @ rot_a_to_b.transpose(-1, -2).to(verts_a.dtype)
    return l1_points(mapped, verts_b, scale)


def consistency2d_loss(
    uv_a: torch.Tensor, uv_b: torch.Tensor, hom_a_to_b: torch.Tensor, crop_size_px: float
) -> torch.Tensor:
    """L1 between view a's 2D joints mapped into view b's crop and view b's, crop-normalised; scalar."""
    return l1_points(apply_homography(uv_a, hom_a_to_b.to(uv_a.dtype)), uv_b, crop_size_px)


class HandMeshLoss(torch.nn.Module):
    """Weighted sum of all terms. Mesh faces are a non-persistent buffer (not in checkpoints)."""

    faces: torch.Tensor
    edges: torch.Tensor

    def __init__(self, *, faces: torch.Tensor, weights: LossWeights) -> None:
        super().__init__()
        faces = torch.as_tensor(faces, dtype=torch.long)
        self.weights = weights
        self.register_buffer("faces", faces, persistent=False)
        self.register_buffer("edges", mesh_edges(faces), persistent=False)

    def single_view(self, pred: LossPrediction, target: LossTarget) -> dict[str, torch.Tensor]:
        """Unweighted per-view terms (``mesh, pose2d, normal, edge, dgp_joints, dgp_verts``)."""
        w, s = self.weights, self.weights.length_scale_m
        terms: dict[str, torch.Tensor] = {}
        if w.mesh > 0:
            terms["mesh"] = l1_points(pred.verts_rel, target.verts_rel, s)
        if w.pose2d > 0:
            terms["pose2d"] = l1_points(pred.joints_uv, target.joints_uv, target.crop_size_px)
        if w.normal > 0:
            terms["normal"] = normal_loss(pred.verts_rel, target.verts_rel, self.faces)
        if w.edge > 0:
            terms["edge"] = edge_length_loss(pred.verts_rel, target.verts_rel, self.edges, s)
        if w.dgp_joints > 0:
            if pred.joints_cam is None or target.joints_cam is None:
                raise LossInputError("dgp_joints weight > 0 needs camera-space joints in prediction and target")
            terms["dgp_joints"] = l1_points(pred.joints_cam, target.joints_cam, s)
        if w.dgp_verts > 0:
            if pred.verts_cam is None or target.verts_cam is None:
                raise LossInputError("dgp_verts weight > 0 needs camera-space vertices in prediction and target")
            terms["dgp_verts"] = l1_points(pred.verts_cam, target.verts_cam, s)
        return terms

    def forward(
        self,
        pred_a: LossPrediction,
        target_a: LossTarget,
        pred_b: LossPrediction | None = None,
        target_b: LossTarget | None = None,
        pair: ViewPair | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss (scalar) and the unweighted terms (detached scalars, for logging).

        With a second view (``pred_b``, ``target_b``, ``pair``) the per-view terms are averaged over
        both views and the two consistency terms are added; with one view they are skipped.
        """
        terms = self.single_view(pred_a, target_a)
        two_views = pred_b is not None
        if two_views:
            if target_b is None or pair is None:
                raise LossInputError("a second view needs pred_b, target_b and pair together")
            terms_b = self.single_view(pred_b, target_b)
            terms = {k: 0.5 * (v + terms_b[k]) for k, v in terms.items()}
            w, s = self.weights, self.weights.length_scale_m
            if w.consistency3d > 0:
                terms["consistency3d"] = consistency3d_loss(pred_a.verts_rel, pred_b.verts_rel, pair.rot_a_to_b, s)
            if w.consistency2d > 0:
                terms["consistency2d"] = consistency2d_loss(
                    pred_a.joints_uv, pred_b.joints_uv, pair.hom_a_to_b, target_b.crop_size_px
                )
        if not terms:
            raise LossInputError("every loss weight is 0: nothing to optimise")
        weight_of = self.weights.to_dict()
        total = torch.stack([weight_of[k] * v for k, v in terms.items()]).sum()
        return total, {k: v.detach() for k, v in terms.items()}


def view_pair_from_rectifications(
    virt_from_cam_a: torch.Tensor,
    crop_from_image_a: torch.Tensor,
    virt_from_cam_b: torch.Tensor,
    crop_from_image_b: torch.Tensor,
) -> ViewPair:
    """Transform between two rectified views of the same camera image.

    Args:
        virt_from_cam_a, virt_from_cam_b: ``(B, 3, 3)`` camera -> network frame of each view (rotation,
            times a mirror for left hands), as ``models.rectify`` returns them.
        crop_from_image_a, crop_from_image_b: ``(B, 3, 3)`` homographies image pixels -> crop pixels.

    Returns:
        The :class:`ViewPair` with ``rot_a_to_b = F_b F_a^T`` and ``hom_a_to_b = H_b H_a^-1``.
    """
    rot = virt_from_cam_b @ virt_from_cam_a.transpose(-1, -2)
    hom = crop_from_image_b @ torch.linalg.inv(crop_from_image_a)
    return ViewPair(rot_a_to_b=rot, hom_a_to_b=hom)


def heatmap_kl_loss(heatmaps: torch.Tensor, joints_uv: torch.Tensor, crop_size: int, sigma_px: float) -> torch.Tensor:
    """Mean KL(target || heatmap) of soft-argmax heatmaps against Gaussians at the ground-truth joints.

    heatmaps: ``(B, T, J, h, w)`` probabilities (each map sums to 1) on a stride ``crop_size / w`` grid
        whose cell j has its centre at crop pixel ``(j + 0.5) * stride - 0.5``.
    joints_uv: ``(B, J, 2)`` ground-truth joints in crop pixels (x right, y down).
    Returns a scalar in nats (0 when the heatmap equals the target).
    """
    height, width = heatmaps.shape[-2:]
    stride = crop_size / width
    xs = (torch.arange(width, device=heatmaps.device, dtype=heatmaps.dtype) + 0.5) * stride - 0.5
    ys = (torch.arange(height, device=heatmaps.device, dtype=heatmaps.dtype) + 0.5) * stride - 0.5
    dx2 = (xs.view(1, 1, 1, width) - joints_uv[..., 0:1, None].to(heatmaps.dtype)) ** 2
    dy2 = (ys.view(1, 1, height, 1) - joints_uv[..., 1:2, None].to(heatmaps.dtype)) ** 2
    logits = -(dx2 + dy2) / (2.0 * sigma_px**2)
    target = torch.softmax(logits.flatten(-2), dim=-1).unsqueeze(1)
    log_p = torch.log(heatmaps.flatten(-2).clamp_min(1e-12))
    kl = (target * (torch.log(target.clamp_min(1e-12)) - log_p)).sum(-1)
    return kl.mean()
