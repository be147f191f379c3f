"""Losses of Eq. 6: Lovász-softmax (hand-computed), CE with ignore/mask_camera, L_cons (Eqs. 4-5), L_cls (Eq. 3)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from protoocc_ros.model.losses import (
    consistency_loss,
    ignore_outside_mask,
    lovasz_softmax,
    prototype_contrastive_loss,
    resize_labels,
    semantic_losses,
)


def test_lovasz_matches_hand_computed_value() -> None:
    # class 0: errors [.1,.6,.3], sorted fg [0,0,1], ΔJ [1/2,1/6,1/3] -> .6/2 + .3/6 + .1/3 = 0.383333
    # class 1: errors [.1,.6,.3], sorted fg [1,1,0], ΔJ [1/2,1/2,0]   -> .6/2 + .3/2         = 0.45
    probs = torch.tensor([[0.9, 0.1, 0.0], [0.6, 0.4, 0.0], [0.3, 0.7, 0.0], [0.2, 0.2, 0.6]])
    labels = torch.tensor([0, 1, 1, 255])  # the last voxel is ignored; class 2 is absent
    loss = lovasz_softmax(probs, labels, 255)
    assert loss.item() == pytest.approx((0.6 / 2 + 0.3 / 6 + 0.1 / 3 + 0.45) / 2, abs=1e-6)


def test_lovasz_of_hard_predictions_is_one_minus_iou() -> None:
    torch.manual_seed(0)
    labels, pred = torch.randint(0, 4, (500,)), torch.randint(0, 4, (500,))
    loss = lovasz_softmax(F.one_hot(pred, 4).float(), labels, 255)
    ious = [((pred == c) & (labels == c)).sum() / ((pred == c) | (labels == c)).sum() for c in range(4)]
    assert loss.item() == pytest.approx(float(1 - torch.stack(ious).mean()), abs=1e-6)


def test_semantic_losses_ignore_masked_voxels() -> None:
    torch.manual_seed(0)
    logits = torch.randn(1, 3, 4, 4, 2)
    sem = torch.randint(0, 3, (1, 4, 4, 2))
    mask = torch.rand(1, 4, 4, 2) > 0.5
    flat = logits.movedim(1, -1).reshape(-1, 3)

    def losses(semantics: torch.Tensor) -> tuple[float, float]:
        labels = ignore_outside_mask(semantics, mask, 255).reshape(-1)
        index = (labels != 255).nonzero().squeeze(1)
        ce, lov, _ = semantic_losses(flat, index, labels[index], with_probs=False)
        return ce.item(), lov.item()

    changed = torch.where(mask, sem, (sem + 1) % 3)  # relabel only voxels outside mask_camera
    assert losses(sem) == losses(changed)
    keep = mask.reshape(-1)
    assert losses(sem)[0] == pytest.approx(F.cross_entropy(flat[keep], sem.reshape(-1)[keep]).item(), rel=1e-6)


def test_consistency_is_zero_when_perspectives_agree_and_positive_otherwise() -> None:
    torch.manual_seed(0)
    soft = torch.randn(50, 5).softmax(-1)
    assert consistency_loss([soft, soft.clone(), soft.clone()], tau=1.0).item() == pytest.approx(0.0, abs=1e-12)
    confident = F.one_hot(torch.randint(0, 5, (50,)), 5).float() * 40.0
    sharp = confident.softmax(-1)
    assert consistency_loss([sharp, sharp.clone()], tau=0.5).item() < 1e-12
    other = torch.randn(50, 5).softmax(-1)
    assert consistency_loss([soft, other], tau=1.0).item() > 1e-3
    assert consistency_loss([soft, soft], tau=0.5).item() > 0  # Eq. 4 sharpening pulls soft outputs apart


def test_consistency_matches_equations_4_and_5() -> None:
    torch.manual_seed(1)
    views = [torch.randn(7, 3).softmax(-1) for _ in range(3)]
    mean = sum(views) / 3
    sharp = mean ** 2 / (mean ** 2).sum(-1, keepdim=True)  # tau = 0.5
    expected = sum(((sharp - v) ** 2).sum(-1).sum() for v in views) / (7 * 3)
    assert consistency_loss(views, tau=0.5).item() == pytest.approx(expected.item(), rel=1e-6)


def test_resize_labels_nearest() -> None:
    masks = torch.arange(16).view(1, 4, 4)
    assert resize_labels(masks, (2, 2)).tolist() == [[[5, 7], [13, 15]]]


def test_contrastive_loss_rewards_features_that_follow_the_masks() -> None:
    torch.manual_seed(0)
    masks = torch.zeros(1, 8, 8, dtype=torch.int32)
    masks[:, :, 4:] = 1
    masks[:, 4:, :4] = 2
    centres = torch.randn(3, 16)
    aligned = centres[masks.long()].permute(0, 3, 1, 2) + 0.05 * torch.randn(1, 16, 8, 8)
    shuffled = aligned[:, :, torch.randperm(8)][:, :, :, torch.randperm(8)]
    cover = torch.ones(1, 8, 8)
    good = prototype_contrastive_loss(aligned, cover, masks, tau=0.1)
    bad = prototype_contrastive_loss(shuffled, cover, masks, tau=0.1)
    assert good.item() < 0.05 < bad.item()
    # cells without attention coverage do not count
    cover2 = cover.clone()
    cover2[:, :4, :4] = 0
    broken = aligned.clone()
    broken[:, :, :4, :4] = torch.randn(1, 16, 4, 4)
    assert prototype_contrastive_loss(broken, cover2, masks, 0.1).item() == pytest.approx(
        prototype_contrastive_loss(aligned, cover2, masks, 0.1).item(), abs=1e-6)


def test_contrastive_loss_matches_equation_3_loop() -> None:
    torch.manual_seed(2)
    x = torch.randn(2, 4, 3, 3)
    masks = torch.randint(0, 3, (2, 3, 3), dtype=torch.int32)
    loss = prototype_contrastive_loss(x, torch.ones(2, 3, 3), masks, tau=0.2)
    terms = []
    for s in range(2):
        cells = [(i, j) for i in range(3) for j in range(3)]
        present = sorted({int(masks[s, i, j]) for i, j in cells})
        cents = {m: torch.stack([x[s, :, i, j] for i, j in cells if masks[s, i, j] == m]).mean(0) for m in present}
        for i, j in cells:
            sims = {m: F.cosine_similarity(cents[m], x[s, :, i, j], dim=0) / 0.2 for m in present}
            num = torch.exp(sims[int(masks[s, i, j])])
            terms.append(-torch.log(num / sum(torch.exp(v) for v in sims.values())))
    assert loss.item() == pytest.approx(torch.stack(terms).mean().item(), rel=1e-5)
