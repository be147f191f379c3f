"""Sequential clips for training the temporal memory (paper Sec. 4.1; BEVFormer-style queue of consecutive frames).

A scene's frames are cut into ``len // clip_length`` windows of ``clip_length`` consecutive frames
(never across scenes; a scene shorter than that is one clip); a random offset per scene and epoch
within the ``len % clip_length`` spare frames moves the windows so every frame is used over epochs.
Clips of equal length are batched ``batch_size`` at a time, the batch order is shuffled with
``(seed, epoch)`` only (so resuming reproduces it) and, under DDP, batches are dealt round-robin to
the ranks, every rank getting the same number. A batch is ``[clip_1, ..., clip_B]``, a clip a list of
dataset indices in frame order.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from protoocc_ros.training.errors import TrainingError

Batch = list[list[int]]  # B clips x T dataset indices


def frame_keys(dataset: Any) -> list[tuple[str, int]]:
    """(scene, position in the scene) of every dataset index, without loading images.

    Uses ``dataset.scenes()`` + ``dataset.scene_indices(scene)`` (the loaders of protoocc_ros.data) or a
    ``dataset.frame_keys()`` method returning the list directly.
    """
    name = type(dataset).__name__
    if hasattr(dataset, "frame_keys"):
        keys = [(str(s), int(i)) for s, i in dataset.frame_keys()]
    elif hasattr(dataset, "scenes") and hasattr(dataset, "scene_indices"):
        found: dict[int, tuple[str, int]] = {}
        for scene in dataset.scenes():
            for position, index in enumerate(dataset.scene_indices(scene)):
                found[int(index)] = (str(scene), position)
        keys = [found.get(i, ("", -1)) for i in range(len(dataset))]
        if len(found) != len(dataset) or ("", -1) in keys:
            raise TrainingError(f"{name}: scene_indices() cover {len(found)} of {len(dataset)} samples")
    else:
        raise TrainingError(f"{name}: needs scenes() + scene_indices(scene) (or frame_keys()) to build "
                            "sequential clips")
    if len(keys) != len(dataset):
        raise TrainingError(f"{name}.frame_keys(): {len(keys)} keys for {len(dataset)} samples")
    return keys


def scene_sequences(keys: Sequence[tuple[str, int]]) -> dict[str, list[int]]:
    """scene -> dataset indices sorted by frame_index (scenes in order of first appearance)."""
    by_scene: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for index, (scene, frame) in enumerate(keys):
        by_scene[scene].append((frame, index))
    return {scene: [i for _, i in sorted(frames)] for scene, frames in by_scene.items()}


class ClipSampler:
    """Deterministic per-epoch list of batches of sequential clips for one rank."""

    def __init__(self, keys: Sequence[tuple[str, int]], clip_length: int, batch_size: int, seed: int = 0,
                 rank: int = 0, world_size: int = 1, shuffle: bool = True) -> None:
        if clip_length < 1 or batch_size < 1:
            raise TrainingError(f"clip_length={clip_length}, batch_size={batch_size}: both must be >= 1")
        if not 0 <= rank < world_size:
            raise TrainingError(f"rank {rank} outside world_size {world_size}")
        self.scenes = scene_sequences(keys)
        if not self.scenes:
            raise TrainingError("the training split is empty (no frames to cut into clips)")
        self.clip_length, self.batch_size, self.seed = clip_length, batch_size, seed
        self.rank, self.world_size, self.shuffle = rank, world_size, shuffle
        if len(self) == 0:
            raise TrainingError(f"{sum(map(len, self.scenes.values()))} frames give fewer than one batch per rank "
                                f"(batch_size={batch_size}, world_size={world_size}, clip_length={clip_length})")

    def clips(self, epoch: int) -> list[list[int]]:
        """All clips of an epoch (before batching): windows of clip_length inside each scene."""
        rng = np.random.default_rng([self.seed, epoch])
        out = []
        for frames in self.scenes.values():
            t = self.clip_length
            if len(frames) <= t:
                out.append(list(frames))
                continue
            count, spare = divmod(len(frames), t)  # the same number of clips every epoch
            offset = int(rng.integers(0, spare + 1)) if self.shuffle else 0
            out.extend(frames[offset + k * t:offset + (k + 1) * t] for k in range(count))
        return out

    def all_batches(self, epoch: int) -> list[Batch]:
        """Every rank's batches of an epoch (equal-length clips together), shuffled with (seed, epoch)."""
        rng = np.random.default_rng([self.seed, epoch, 1])
        clips = self.clips(epoch)
        if self.shuffle:
            clips = [clips[i] for i in rng.permutation(len(clips))]
        by_length: dict[int, list[list[int]]] = defaultdict(list)
        for clip in clips:
            by_length[len(clip)].append(clip)
        batches = [group[i:i + self.batch_size] for _, group in sorted(by_length.items())
                   for i in range(0, len(group), self.batch_size)]
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def batches(self, epoch: int) -> list[Batch]:
        """This rank's batches: round-robin share, truncated so all ranks take the same number of steps."""
        mine = self.all_batches(epoch)[self.rank::self.world_size]
        return mine[:len(self)]

    def __len__(self) -> int:
        """Batches per epoch and rank (the same for every epoch)."""
        return len(self.all_batches(0)) // self.world_size
