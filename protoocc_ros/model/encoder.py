"""Voxel-query encoder layer (paper Sec. 3.1-3.2): temporal self-attn, prototype-aware spatial cross-attn, FFN.

Operation order as BEVFormer / PanoOcc: (self_attn, norm, cross_attn, norm, ffn, norm); the
temporal part is absent when ``model.temporal.enabled`` is false, the prototype mapping when
``model.prototypes.enabled`` is false (the PanoOcc-style baseline).
"""
from __future__ import annotations

from torch import Tensor, nn

from protoocc_ros.config import EncoderConfig, PrototypeConfig
from protoocc_ros.model.prototypes import PrototypeMapping
from protoocc_ros.model.spatial_cross_attention import CameraQueries, SpatialCrossAttention
from protoocc_ros.model.temporal_attention import TemporalSelfAttention


class EncoderLayer(nn.Module):
    def __init__(self, embed_dims: int, cfg: EncoderConfig, num_levels: int, temporal: bool,
                 prototypes: bool, proto: PrototypeConfig) -> None:
        super().__init__()
        self.temporal_attn = (TemporalSelfAttention(embed_dims, cfg.num_heads, cfg.num_points, cfg.dropout)
                              if temporal else None)
        self.norm_temporal = nn.LayerNorm(embed_dims) if temporal else None
        self.prototype_mapping = (PrototypeMapping(embed_dims, proto.learned_affinity_scale, proto.per_prototype_norm,
                                                   proto.dispatch_mlp_on_prototypes, proto.hard_assignment,
                                                   not proto.cls_trains_queries)
                                  if prototypes else None)
        self.cross_attn = SpatialCrossAttention(embed_dims, cfg.num_heads, num_levels, cfg.num_points,
                                                cfg.num_points_in_pillar, cfg.dropout,
                                                dispatch_to_output=prototypes and proto.dispatch_to_output)
        self.norm_cross = nn.LayerNorm(embed_dims)
        self.ffn = nn.Sequential(nn.Linear(embed_dims, cfg.ffn_dims), nn.ReLU(inplace=True), nn.Dropout(cfg.dropout),
                                 nn.Linear(cfg.ffn_dims, embed_dims), nn.Dropout(cfg.dropout))
        self.norm_ffn = nn.LayerNorm(embed_dims)

    def forward(self, query: Tensor, query_pos: Tensor, prev: Tensor, ref: Tensor, size: tuple[int, int, int],
                feats: list[Tensor], cams: CameraQueries, p_img: Tensor | None) -> tuple[Tensor, dict[str, Tensor]]:
        """query, query_pos, prev (B, Q, d); feats per level (B*N, d, H_l, W_l); p_img (B*N, M, d) or None."""
        if self.temporal_attn is not None and self.norm_temporal is not None:
            query = self.norm_temporal(self.temporal_attn(query, query_pos, prev, ref, size))
        transform = None
        if self.prototype_mapping is not None and p_img is not None:
            mapping = self.prototype_mapping

            def transform(q: Tensor, valid: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
                q_hat, affinity, p_vox = mapping(p_img, q, valid)  # Eqs. 1a-1b per camera
                return q_hat, {"affinity": affinity, "p_vox": p_vox, "valid": valid}

        query, aux = self.cross_attn(query, query_pos, feats, cams, transform)
        query = self.norm_cross(query)
        return self.norm_ffn(query + self.ffn(query)), aux
