"""Health figures of the prototype path (Sec. 3.2): is the mapping more than a constant per camera?

A collapsed mapping (Eqs. 1a/1b read with one soft σ over all M·K pairs and one R per camera) gives every
prototype P_vox of a camera nearly the same vector and every hit query the same dispatched update: a learned
bias per camera. These figures show it, per encoder layer, averaged over the camera images of the calls made
while recording:

- ``proto_cosine``: mean cosine between the P_vox of the prototypes that received a query (1 = one vector);
- ``dispatch_cosine``: mean cosine between the dispatched updates Q̂ − Q' of different hit queries;
- ``dispatch_share``: mean |Q̂ − Q'| / |Q'| (how much of the query the prototypes change);
- ``query_cosine``: mean cosine between the hit queries Q' themselves (what the dispatch cosine compares with);
- ``prototypes_used``: fraction of the M prototypes that received at least one query;
- ``cluster.entropy`` of the clustering's last soft assignment per pixel (nats) against ``cluster.entropy_max``
  = ln M (uniform assignment: no clustering).

    with recording(model) as rec:
        model(...)
    rec.summary()  # {"layer0.proto_cosine": 0.31, ..., "cluster.entropy": 1.2, "cluster.entropy_max": 4.2}

A mapping counts as collapsed when either cosine is at or above ``COLLAPSE_COSINE``.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from protoocc_ros.model.prototypes import PrototypeClustering, PrototypeMapping

COLLAPSE_COSINE = 0.9  # both cosines below this: the mapping carries more than one vector per camera
MAPPING_FIGURES = ("proto_cosine", "dispatch_cosine", "dispatch_share", "prototypes_used")


def mean_pairwise_cosine(x: Tensor, mask: Tensor) -> Tensor:
    """Mean cosine over the pairs i != j of the masked rows: x (S, n, d), mask (S, n) -> (S,), NaN with < 2 rows.

    O(n·d): Σ_{i≠j} u_i·u_j = |Σ_i u_i|² − n for unit rows u."""
    u = torch.nn.functional.normalize(x.float(), dim=-1) * mask[..., None].float()
    n = mask.float().sum(-1)
    pair_sum = u.sum(1).square().sum(-1) - n
    return torch.where(n >= 2, pair_sum / (n * (n - 1)).clamp(min=1), torch.full_like(n, math.nan))


@dataclass
class _Mean:
    total: float = 0.0
    count: int = 0

    def add(self, values: Tensor) -> None:
        finite = values[torch.isfinite(values)]
        self.total += float(finite.sum())
        self.count += int(finite.numel())

    @property
    def value(self) -> float:
        return self.total / self.count if self.count else math.nan


@dataclass
class HealthRecorder:
    """Collects the figures of every attached module; with ``capture`` also the last call's assignments (for the
    prototype picture): ``pixel_prototype`` (S, h_f, w_f) and ``query_prototype[layer]`` (S, K) with ``valid``."""

    capture: bool = False
    names: dict[int, str] = field(default_factory=dict)
    means: dict[str, _Mean] = field(default_factory=dict)
    entropy_max: float = math.nan
    pixel_prototype: Tensor | None = None
    query_prototype: dict[str, tuple[Tensor, Tensor]] = field(default_factory=dict)

    def _add(self, key: str, values: Tensor) -> None:
        self.means.setdefault(key, _Mean()).add(values.detach().float().reshape(-1).cpu())

    @torch.no_grad()
    def clustering(self, assign: Tensor, feat_size: tuple[int, int]) -> None:
        """assign (S, D, M): the soft pixel-to-prototype assignment of the last clustering iteration."""
        p = assign.float().clamp(min=1e-12)
        self._add("cluster.entropy", -(p * p.log()).sum(-1).mean(-1))
        self.entropy_max = math.log(assign.shape[-1])
        if self.capture:
            self.pixel_prototype = assign.argmax(-1).view(assign.shape[0], *feat_size).cpu()

    @torch.no_grad()
    def mapping(self, module: nn.Module, q: Tensor, dispatched: Tensor, p_vox: Tensor, affinity: Tensor,
                sim: Tensor, valid: Tensor) -> None:
        """One call of a PrototypeMapping: q = Q' (S, K, d), dispatched = Q̂ − Q', p_vox (S, M, d), A and S (S, M, K)."""
        layer = self.names.get(id(module), "layer?")
        used = sim.sum(-1) > 0  # (S, M)
        has_queries = valid.any(-1)
        self._add(f"{layer}.proto_cosine", mean_pairwise_cosine(p_vox, used))
        self._add(f"{layer}.dispatch_cosine", mean_pairwise_cosine(dispatched, valid))
        self._add(f"{layer}.query_cosine", mean_pairwise_cosine(q, valid))
        share = dispatched.float().norm(dim=-1) / q.float().norm(dim=-1).clamp(min=1e-12)
        self._add(f"{layer}.dispatch_share", share[valid])
        self._add(f"{layer}.prototypes_used", used.float().mean(-1)[has_queries])
        if self.capture:
            self.query_prototype[layer] = (affinity.argmax(1).cpu(), valid.cpu())

    def summary(self) -> dict[str, float]:
        """Figure name -> mean over the recorded calls (NaN for a figure that never had two rows)."""
        out = {k: m.value for k, m in sorted(self.means.items())}
        if "cluster.entropy" in out:
            out["cluster.entropy_max"] = self.entropy_max
        return out


def collapsed_layers(summary: dict[str, float], threshold: float = COLLAPSE_COSINE) -> list[str]:
    """The layers whose prototype or dispatch cosine is at or above ``threshold`` (or was never measured)."""
    layers = sorted({k.split(".", 1)[0] for k in summary if k.endswith(".proto_cosine")})
    return [layer for layer in layers
            if not all(summary.get(f"{layer}.{f}", math.nan) < threshold for f in ("proto_cosine", "dispatch_cosine"))]


@contextmanager
def recording(model: nn.Module, capture: bool = False) -> Iterator[HealthRecorder]:
    """Attach a HealthRecorder to every prototype module of ``model`` for the calls inside the block."""
    rec = HealthRecorder(capture=capture)
    attached: list[PrototypeClustering | PrototypeMapping] = []
    for name, module in model.named_modules():
        if isinstance(module, PrototypeMapping):
            parts = name.split(".")  # encoder.<i>.prototype_mapping
            rec.names[id(module)] = f"layer{parts[parts.index('encoder') + 1]}" if "encoder" in parts else name
        if isinstance(module, (PrototypeMapping, PrototypeClustering)):
            module.recorder = rec
            attached.append(module)
    try:
        yield rec
    finally:
        for module in attached:
            module.recorder = None
