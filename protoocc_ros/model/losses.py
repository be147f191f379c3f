"""ProtoOcc losses (paper Sec. 3.4): CE + Lovász-softmax per perspective, L_cls (Eq. 3), L_cons (Eqs. 4-5), Eq. 6.

Labels: voxels with the ignore index (255) do not count; for Occ3D the voxels outside
``mask_camera`` are set to the ignore index first (SemanticKITTI's invalid voxels already are 255).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def ignore_outside_mask(semantics: Tensor, mask_camera: Tensor | None, ignore_index: int) -> Tensor:
    """semantics (B, X, Y, Z) int64 -> copy with `ignore_index` where mask_camera is False."""
    if mask_camera is None:
        return semantics
    return torch.where(mask_camera.bool(), semantics, torch.full_like(semantics, ignore_index))


def flatten_voxels(volume: Tensor) -> Tensor:
    """(B, C, X, Y, Z) -> (B*X*Y*Z, C); free for the decoder's channels-last logits."""
    return volume.movedim(1, -1).reshape(-1, volume.shape[1])


def lovasz_softmax(probs: Tensor, labels: Tensor, ignore_index: int) -> Tensor:
    """Lovász-softmax (Berman et al. 2018) over the classes present in the labels, all sorted at once.

    probs (V, C) softmax probabilities, labels (V,). For class c: errors e_i = |[y_i = c] - p_i(c)|
    sorted descending, loss_c = <e_sorted, ΔJ_c> with ΔJ_c the gradient of the Lovász extension of
    the Jaccard loss; the result is the mean over present classes (0 when nothing is labelled).
    """
    keep = labels != ignore_index
    if not keep.any():
        return probs.sum() * 0.0
    if not keep.all():
        probs, labels = probs[keep], labels[keep]
    probs = probs.float()
    classes = (torch.bincount(labels, minlength=probs.shape[1]) > 0).nonzero().squeeze(1)  # present classes
    fg = (labels[None, :] == classes[:, None]).to(probs.dtype)  # (C_present, V)
    errors, order = (fg - probs.t()[classes]).abs().sort(dim=1, descending=True)
    fg_sorted = torch.gather(fg, 1, order)
    gts = fg_sorted.sum(1, keepdim=True)
    intersection = gts - fg_sorted.cumsum(1)
    union = gts + (1.0 - fg_sorted).cumsum(1)
    jaccard = 1.0 - intersection / union
    grad = torch.cat([jaccard[:, :1], jaccard[:, 1:] - jaccard[:, :-1]], 1)
    return (errors * grad).sum(1).mean()


def semantic_losses(logits: Tensor, index: Tensor, labels: Tensor, with_probs: bool,
                    weight: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
    """CE and Lovász-softmax of one perspective on the labelled voxels.

    logits (V, C); index (V_k,) of the labelled voxels and their labels (V_k,) ->
    (ce, lovasz, softmax of all voxels (V, C) when `with_probs`, for L_cons).
    """
    probs = logits.float().softmax(-1) if with_probs else None
    if index.numel() == 0:
        zero = logits.sum() * 0.0
        return zero, zero, probs
    selected = logits.index_select(0, index).float()  # (V_k, C), one gather (its backward is a scatter)
    ce = F.cross_entropy(selected, labels, weight=weight)
    return ce, lovasz_softmax(selected.softmax(-1), labels, -1), probs


def consistency_loss(perspective_probs: list[Tensor], tau: float) -> Tensor:
    """Scene consistency regularisation, Eqs. 4-5 (GRAND [5]), on the P+1 softmax outputs (V, C).

    V̄ = mean_p V⁽ᵖ⁾; sharpened V̄'_c = V̄_c^{1/τ} / Σ_c V̄_c^{1/τ} (a fixed target, no gradient, as
    GRAND); L_cons = mean over voxels and perspectives of ||V̄' - V⁽ᵖ⁾||².
    """
    with torch.no_grad():
        mean = torch.stack([p.float() for p in perspective_probs]).mean(0)
        sharp = mean.clamp(min=1e-12).pow(1.0 / tau)
        sharp = sharp / sharp.sum(-1, keepdim=True)
    return torch.stack([torch.square(p.float() - sharp).sum(-1).mean() for p in perspective_probs]).mean()


def resize_labels(masks: Tensor, size: tuple[int, int]) -> Tensor:
    """Nearest resize of integer label maps (S, H, W) -> (S, h, w) (sample at output cell centres)."""
    _, h_in, w_in = masks.shape
    rows = ((torch.arange(size[0], device=masks.device) + 0.5) * h_in / size[0]).long().clamp(max=h_in - 1)
    cols = ((torch.arange(size[1], device=masks.device) + 0.5) * w_in / size[1]).long().clamp(max=w_in - 1)
    return masks[:, rows][:, :, cols]


def prototype_contrastive_loss(pixel_features: Tensor, coverage: Tensor, pseudo_masks: Tensor,
                               tau: float) -> Tensor:
    """L_cls, Eq. 3: contrast each cell of X with the S pseudo-mask centroids of its image.

    pixel_features X (S_img, d, h, w), coverage (S_img, h, w) attention mass per cell (cells no
    query looks at carry no feature and are skipped), pseudo_masks (S_img, H, W) int labels >= 0
    (resized to (h, w)). Centroid M_s = mean of X over the cells of mask s; for cell (x, y)
    ℓ = -log(exp(<M_s*, X>/τ) / Σ_s exp(<M_s, X>/τ)) with s* its own mask and <,> the cosine.
    Averaged (not summed) over cells so λ3 does not depend on the image size.
    """
    s_img, _d, h, w = pixel_features.shape
    labels = resize_labels(pseudo_masks.long(), (h, w)).reshape(s_img, h * w)  # (S_img, D)
    x = pixel_features.float().flatten(2).transpose(1, 2)  # (S_img, D, d)
    keep = coverage.reshape(s_img, h * w) > 0
    if not keep.any():
        return pixel_features.sum() * 0.0
    num_masks = int(labels.max()) + 1
    onehot = F.one_hot(labels, num_masks).to(x.dtype) * keep[..., None]  # (S_img, D, S)
    sizes = onehot.sum(1)  # (S_img, S)
    centroids = onehot.transpose(1, 2) @ x / sizes.clamp(min=1)[..., None]  # (S_img, S, d)
    sim = F.normalize(x, dim=-1) @ F.normalize(centroids, dim=-1).transpose(1, 2) / tau  # (S_img, D, S)
    sim = sim.masked_fill((sizes == 0)[:, None, :], float("-inf"))
    nll = F.cross_entropy(sim.reshape(-1, num_masks), labels.reshape(-1), reduction="none")
    return nll[keep.reshape(-1)].mean()


def contrastive_chance(coverage: Tensor, pseudo_masks: Tensor) -> Tensor:
    """L_cls of a predictor with no information (uniform over the masks of the image): the mean over covered
    cells of ln(number of masks that have a covered cell in that image); L_cls above it has learned nothing."""
    s_img, h, w = coverage.shape
    labels = resize_labels(pseudo_masks.to(coverage.device).long(), (h, w)).reshape(s_img, h * w)
    keep = coverage.reshape(s_img, h * w) > 0
    if not keep.any():
        return coverage.new_zeros(())
    present = coverage.new_tensor([float(torch.unique(lab[k]).numel()) for lab, k in zip(labels, keep)])
    cells = keep.sum(1).to(coverage.dtype)
    return (present.clamp(min=1).log() * cells).sum() / cells.sum()
