"""ProtoOcc (CVPR 2025) end to end: backbone -> FPN -> prototype-aware view transformation -> multi-perspective decoder.

    model = ProtoOcc.from_config(cfg)
    out = model(images (B,N,3,H,W), lidar2img (B,N,4,4), ego2global (B,4,4) f64, timestamp (B,) f64, memory)
    loss, terms = model.loss(out, targets)         # Eq. 6
    labels, confidence, memory = model.predict(...)

The same module serves the ROS node, training and evaluation; ``memory`` (TemporalMemory) is
passed in and returned so sequences are handled identically everywhere.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from protoocc_ros.config import ProtoOccConfig, prototype_grid, upsample_factors
from protoocc_ros.model.backbone import build_backbone
from protoocc_ros.model.decoder import MultiPerspectiveDecoder
from protoocc_ros.model.encoder import EncoderLayer
from protoocc_ros.model.errors import ModelError
from protoocc_ros.model.fpn import FPN
from protoocc_ros.model.losses import (
    consistency_loss,
    contrastive_chance,
    flatten_voxels,
    ignore_outside_mask,
    prototype_contrastive_loss,
    semantic_losses,
)
from protoocc_ros.model.prototypes import PrototypeClustering, PrototypePixelFeatures, attention_map
from protoocc_ros.model.spatial_cross_attention import CameraQueries, gather_hit_queries, project_points
from protoocc_ros.model.temporal_memory import TemporalMemory, warp_features
from protoocc_ros.model.voxel_query import VoxelQuery


@dataclass
class ProtoOccOutput:
    logits: Tensor  # (B, C, X, Y, Z) original perspective
    memory: TemporalMemory  # detached, for the next frame of the same sequence
    aux: dict[str, Any] = field(default_factory=dict)  # training only: perspective_logits, pixel_features, coverage


@dataclass
class EncodedImages:
    """What the encoder layers read, computed once per frame (``ProtoOcc.encode_images``)."""

    feats: list[Tensor]         # T FPN levels of (B*N, d, H_l, W_l)
    query: Tensor               # (B, Q, d) voxel query
    pos: Tensor                 # (B, Q, d) its positional embedding
    cams: CameraQueries         # the queries each camera sees (hit gathering)
    p_img: Tensor | None        # image prototypes P_img, None without prototype mapping


class ProtoOcc(nn.Module):
    def __init__(self, cfg: ProtoOccConfig) -> None:
        super().__init__()
        self.cfg = cfg
        m, ds = cfg.model, cfg.dataset
        self.num_classes = ds.num_classes
        self.backbone = build_backbone(m.backbone)
        self.neck = FPN(self.backbone.out_channels, m.neck.channels, m.neck.num_levels)
        self.voxel_query = VoxelQuery(m.embed_dims, m.query_size, ds.point_cloud_range, m.encoder.num_points_in_pillar)
        proto = m.prototypes
        self.prototype_clustering = (PrototypeClustering(prototype_grid(cfg), proto.iterations,
                                                         proto.cluster_temperature) if proto.enabled else None)
        mapped = set(range(m.encoder.num_layers) if proto.layers is None else proto.layers)
        self.encoder = nn.ModuleList(
            EncoderLayer(m.embed_dims, m.encoder, m.neck.num_levels, m.temporal.enabled,
                         prototypes=proto.enabled and i in mapped, proto=proto)
            for i in range(m.encoder.num_layers))
        self.pixel_features = (PrototypePixelFeatures(proto.num_prototypes, proto.pixel_softmax)
                               if proto.optimization else None)
        self.decoder = MultiPerspectiveDecoder(m.embed_dims, ds.num_classes, upsample_factors(cfg), m.decoder)
        weights = cfg.loss.class_weights
        self.class_weights: Tensor | None
        self.register_buffer("class_weights", None if weights is None else torch.tensor(weights), persistent=False)

    @classmethod
    def from_config(cls, cfg: ProtoOccConfig) -> ProtoOcc:
        return cls(cfg)

    # ---------------------------------------------------------------------------------------
    def _check_inputs(self, images: Tensor, lidar2img: Tensor, ego2global: Tensor, timestamp: Tensor) -> None:
        """Any number of cameras N >= 1 (the weights do not depend on N: spatial cross-attention averages over
        the cameras that see a voxel); the image size is the config's (the prototype grid depends on it)."""
        h, w = self.cfg.image_size
        if images.dim() != 5 or images.shape[1] < 1 or tuple(images.shape[2:]) != (3, h, w):
            raise ModelError(f"images: expected (B, N, 3, {h}, {w}), got {tuple(images.shape)}")
        b, n = images.shape[:2]
        expected = {"lidar2img": (lidar2img, (b, n, 4, 4)), "ego2global": (ego2global, (b, 4, 4)),
                    "timestamp": (timestamp, (b,))}
        for name, (t, shape) in expected.items():
            if tuple(t.shape) != shape:
                raise ModelError(f"{name}: expected shape {shape}, got {tuple(t.shape)}")

    def _previous_volume(self, query: Tensor, memory: TemporalMemory | None, ego2global: Tensor,
                         timestamp: Tensor) -> tuple[Tensor, list[str | None]]:
        """The (B, Q, d) volume the temporal attention looks back at, and the reset reason per element."""
        m = self.cfg.model
        d, (h, w, z) = m.embed_dims, m.query_size
        memory = memory if memory is not None else TemporalMemory()
        reasons = memory.reset_reasons(ego2global, timestamp, (d, h, w, z), m.temporal.memory_max_gap_s,
                                       m.temporal.memory_max_pose_jump_m)
        keep = torch.tensor([r is None for r in reasons], device=query.device)
        if not (m.temporal.enabled and bool(keep.any())):
            return query, reasons
        dev = query.device
        assert memory.features is not None and memory.ego2global is not None  # no reset reason: a memory exists
        warped, valid = warp_features(memory.features.to(dev, query.dtype), memory.ego2global.to(dev),
                                      ego2global.to(dev), self.cfg.dataset.point_cloud_range)
        warped = warped.flatten(2).transpose(1, 2)  # (B, Q, d)
        use = valid.flatten(2).transpose(1, 2) & keep[:, None, None]  # (B, Q, 1)
        return torch.where(use, warped, query), reasons

    def encode_images(self, images: Tensor, lidar2img: Tensor, max_hits: int | None = None) -> EncodedImages:
        """Everything before the encoder layers: FPN features, the voxel query, the queries each camera sees
        (``max_hits`` constant slots for a traced graph) and the image prototypes P_img (Sec. 3.2.1)."""
        b, _n, _, img_h, img_w = images.shape
        feats = self.neck(self.backbone(images.flatten(0, 1)))  # T levels of (B*N, d, H_l, W_l)
        query, pos = self.voxel_query(b)  # (B, Q, d) each
        uv, visible = project_points(self.voxel_query.pillar_points, lidar2img.float(), (img_h, img_w))
        cams = gather_hit_queries(uv, visible, max_hits)  # uv (B, N, Q, Z_a, 2) -> K hit queries per camera
        level = self.cfg.model.prototypes.feature_level
        p_img = self.prototype_clustering(feats[level]) if self.prototype_clustering is not None else None
        return EncodedImages(feats, query, pos, cams, p_img)

    def encode_volume(self, enc: EncodedImages, prev: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The encoder layers (temporal self-attention over ``prev``, spatial cross-attention with prototype
        mapping, FFN) -> the voxel volume (B, d, h, w, z) and the last prototype layer's tensors (Eq. 2)."""
        m = self.cfg.model
        h, w, z = m.query_size
        x, aux = enc.query, dict[str, Tensor]()
        for layer in self.encoder:
            x, layer_aux = layer(x, enc.pos, prev, self.voxel_query.centres_normalized, (h, w, z), enc.feats,
                                 enc.cams, enc.p_img)
            aux = layer_aux if "affinity" in layer_aux else aux
        return x.transpose(1, 2).reshape(x.shape[0], m.embed_dims, h, w, z), aux

    def prototype_pixel_features(self, feats: list[Tensor], aux: dict[str, Tensor]) -> tuple[Tensor, Tensor] | None:
        """Eq. 2 from the last prototype layer's tensors: (X (S, d, h_f, w_f), attention mass per cell), or None
        without prototype optimization."""
        if self.pixel_features is None or "affinity" not in aux:
            return None
        level = self.cfg.model.prototypes.feature_level
        feat_size = (int(feats[level].shape[-2]), int(feats[level].shape[-1]))
        g = attention_map(aux["locations"][:, :, :, level], aux["weights"][:, :, :, level],
                          aux["valid"], feat_size, detach=self.cfg.model.prototypes.pixel_softmax)
        return self.pixel_features(aux["affinity"], aux["p_vox"], g, aux["valid"], feat_size)

    def forward(self, images: Tensor, lidar2img: Tensor, ego2global: Tensor, timestamp: Tensor,
                memory: TemporalMemory | None = None) -> ProtoOccOutput:
        self._check_inputs(images, lidar2img, ego2global, timestamp)
        enc = self.encode_images(images, lidar2img)
        feats = enc.feats
        prev, reasons = self._previous_volume(enc.query, memory, ego2global, timestamp)
        volume, aux = self.encode_volume(enc, prev)  # (B, d, h, w, z)
        logits, perspectives = self.decoder(volume)
        out_aux: dict[str, Any] = {}
        if self.training:
            out_aux["perspective_logits"] = perspectives or [logits]
            pixels = self.prototype_pixel_features(feats, aux)
            if pixels is not None:
                out_aux["pixel_features"], out_aux["coverage"] = pixels
        new_memory = TemporalMemory(volume.detach(), ego2global.detach(), timestamp.detach(), reasons)
        return ProtoOccOutput(logits, new_memory, out_aux)

    # ---------------------------------------------------------------------------------------
    def loss(self, out: ProtoOccOutput, targets: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """Eq. 6: Σ_p (λ1 CE + λ2 Lovász) + λ3 L_cls + λ4 L_cons; returns (loss, float terms)."""
        lc, ds = self.cfg.loss, self.cfg.dataset
        if "semantics" not in targets:
            raise ModelError("targets: 'semantics' (B, X, Y, Z) int64 is required")
        sem = targets["semantics"].long().to(out.logits.device)
        mask = targets.get("mask_camera") if ds.use_mask_camera else None
        sem = ignore_outside_mask(sem, None if mask is None else mask.to(sem.device), ds.ignore_index)
        perspectives = out.aux.get("perspective_logits") or [out.logits]
        labels = sem.reshape(-1)
        index = (labels != ds.ignore_index).nonzero().squeeze(1)  # labelled voxels, shared by all perspectives
        labels = labels.index_select(0, index)
        per_view = [semantic_losses(flatten_voxels(lg), index, labels, len(perspectives) > 1, self.class_weights)
                    for lg in perspectives]
        ce = torch.stack([v[0] for v in per_view]).sum()
        lovasz = torch.stack([v[1] for v in per_view]).sum()
        probs = [v[2] for v in per_view if v[2] is not None]
        total = lc.lambda_ce * ce + lc.lambda_lovasz * lovasz
        terms = {"ce": float(ce.detach()), "lovasz": float(lovasz.detach())}
        if len(perspectives) > 1:
            cons = consistency_loss(probs, lc.tau_cons)
            total = total + lc.lambda_cons * cons
            terms["cons"] = float(cons.detach())
        pseudo = targets.get("pseudo_masks")
        if "pixel_features" in out.aux and pseudo is not None:
            cls = prototype_contrastive_loss(out.aux["pixel_features"], out.aux["coverage"],
                                             pseudo.flatten(0, 1).to(sem.device), lc.tau_cls)
            total = total + lc.lambda_cls * cls
            terms["cls"] = float(cls.detach())
            terms["cls_chance"] = float(contrastive_chance(out.aux["coverage"].detach(), pseudo.flatten(0, 1)))
        terms["total"] = float(total.detach())
        return total, terms

    @torch.no_grad()
    def predict(self, images: Tensor, lidar2img: Tensor, ego2global: Tensor, timestamp: Tensor,
                memory: TemporalMemory | None = None) -> tuple[Tensor, Tensor, TemporalMemory]:
        """Eval-mode inference: (labels (B,X,Y,Z) uint8, confidence (B,X,Y,Z) float32 in 0..1, memory)."""
        was_training = self.training
        self.eval()
        try:
            out = self(images, lidar2img, ego2global, timestamp, memory)
        finally:
            self.train(was_training)
        confidence, labels = out.logits.float().softmax(1).max(1)
        return labels.to(torch.uint8).contiguous(), confidence.contiguous(), out.memory


# -------------------------------------------------------------------------------------------
STAGES = ("backbone", "neck", "view_transformation", "temporal", "decoder")


def parameter_stage(name: str) -> str:
    """Stage of a parameter: backbone, neck, view_transformation (query, SCA, FFN, prototypes), temporal, decoder."""
    head = name.split(".", 1)[0]
    if head in ("backbone", "neck", "decoder"):
        return head
    if ".temporal_attn." in name or ".norm_temporal." in name:
        return "temporal"
    return "view_transformation"


def count_parameters_by_stage(model: nn.Module) -> dict[str, int]:
    """Parameter counts (trainable or frozen) per stage plus 'total'."""
    counts = dict.fromkeys(STAGES, 0)
    for name, p in model.named_parameters():
        counts[parameter_stage(name)] += p.numel()
    counts["total"] = sum(counts[s] for s in STAGES)
    return counts


def count_prototype_parameters(model: nn.Module) -> int:
    """Parameters of the prototype parts (mapping MLPs, α, β and H of Eq. 2); part of view_transformation."""
    return sum(p.numel() for name, p in model.named_parameters()
               if ".prototype_mapping." in name or name.startswith("pixel_features."))
