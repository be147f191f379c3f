"""Multi-perspective decoder: augmentations, their exact inverses, shared upsampler, eval behaviour."""
from __future__ import annotations

import pytest
import torch

from protoocc_ros.config import DecoderConfig
from protoocc_ros.model.decoder import (
    MultiPerspectiveDecoder,
    apply_spatial,
    augment_volume,
    invert_spatial,
    upsample_kernel,
)

SPECS = ["transpose", "flip_x", "flip_y", "flip", "transpose+flip_x", "flip_y+transpose", "dropout+noise+flip"]


@pytest.mark.parametrize("spec", SPECS)
def test_inverse_augmentation_restores_the_frame_exactly(spec: str) -> None:
    vol = torch.randn(2, 3, 5, 5, 4)
    assert torch.equal(invert_spatial(apply_spatial(vol, spec), spec), vol)
    last = vol.permute(0, 2, 3, 4, 1)  # channels-last layout used for the logits
    assert torch.equal(invert_spatial(apply_spatial(last, spec, x_dim=1), spec, x_dim=1), last)


def test_spatial_augmentations_move_voxels_as_named() -> None:
    vol = torch.arange(2 * 3 * 1, dtype=torch.float32).view(1, 1, 2, 3, 1)
    assert apply_spatial(vol, "flip_x")[0, 0, 0, :, 0].tolist() == vol[0, 0, 1, :, 0].tolist()
    assert apply_spatial(vol, "flip_y")[0, 0, :, 0, 0].tolist() == vol[0, 0, :, 2, 0].tolist()
    assert apply_spatial(vol, "transpose").shape == (1, 1, 3, 2, 1)


def test_feature_augmentations_change_features_only() -> None:
    torch.manual_seed(0)
    vol = torch.randn(1, 4, 3, 3, 2)
    dropped = augment_volume(vol, "dropout", dropout_p=0.5, noise_std=0.0)
    zeroed = dropped == 0
    assert zeroed.any() and torch.allclose(dropped[~zeroed], 2.0 * vol[~zeroed])  # inverted dropout scaling
    noisy = augment_volume(vol, "noise", dropout_p=0.0, noise_std=0.1)
    assert 0.05 < (noisy - vol).std() < 0.2


@pytest.mark.parametrize("factor, overlap", [(1, True), (2, True), (4, True), (4, False), (3, True)])
def test_upsample_kernel_scales_exactly(factor: int, overlap: bool) -> None:
    k, p = upsample_kernel(factor, overlap)
    conv = torch.nn.ConvTranspose3d(2, 2, (k, k, k), stride=factor, padding=p)
    assert conv(torch.randn(1, 2, 3, 4, 5)).shape[2:] == (3 * factor, 4 * factor, 5 * factor)


def _decoder(multi: bool = True) -> MultiPerspectiveDecoder:
    cfg = DecoderConfig(multi_perspective=multi, augmentations=["dropout+transpose", "noise+flip"], channels=4,
                        dropout_p=0.2, noise_std=0.1, overlap=True)
    return MultiPerspectiveDecoder(8, 5, (2, 2, 1), cfg)


def test_training_returns_all_perspectives_in_the_grid_frame() -> None:
    torch.manual_seed(0)
    dec = _decoder().train()
    vol = torch.randn(2, 8, 6, 6, 3)
    logits, views = dec(vol)
    assert len(views) == 3 and logits is views[0]
    assert all(v.shape == (2, 5, 12, 12, 3) for v in views)
    # with the feature augmentations off, an augmented perspective is the shared decoder applied to
    # the transformed volume, then transformed back: compare with doing that by hand
    dec.cfg.dropout_p, dec.cfg.noise_std = 0.0, 0.0
    dec.eval()  # fixed BatchNorm statistics for the comparison
    by_hand = invert_spatial(dec.decode(apply_spatial(vol, "transpose")).permute(0, 4, 1, 2, 3), "transpose")
    dec.train()
    dec.norm.eval()
    _, views = dec(vol)
    torch.testing.assert_close(views[1], by_hand)
    assert not torch.allclose(views[1], views[0])  # a transposed perspective is a different view


def test_eval_and_flag_off_run_the_original_perspective_only() -> None:
    vol = torch.randn(1, 8, 6, 6, 3)
    dec = _decoder().eval()
    logits, views = dec(vol)
    assert views == [] and logits.shape == (1, 5, 12, 12, 3)
    off = _decoder(multi=False).train()
    assert off.num_perspectives == 1 and off(vol)[1] == []
