"""Base of the dataset loaders: frames grouped by scene / sequence in time order (memory reset at boundaries)."""
from __future__ import annotations

from torch.utils.data import Dataset

from protoocc_ros.data.errors import DatasetError


class SceneDataset(Dataset):
    """A dataset whose ``frames`` belong to scenes; ``scenes()`` / ``scene_indices()`` give sequential clips."""

    def __init__(self) -> None:
        self.frames: list = []
        self._by_scene: dict[str, list[int]] = {}

    def _add_frame(self, scene: str, frame) -> int:
        """Append a frame to ``scene``; returns its position in the scene."""
        self._by_scene.setdefault(scene, []).append(len(self.frames))
        self.frames.append(frame)
        return len(self._by_scene[scene]) - 1

    def scenes(self) -> list[str]:
        """Scene (Occ3D) / sequence (KITTI) names in dataset order."""
        return list(self._by_scene)

    def scene_indices(self, scene: str) -> list[int]:
        """Dataset indices of ``scene``'s frames in time order."""
        if scene not in self._by_scene:
            raise DatasetError(f"scene {scene!r} is not in this dataset; scenes: {self.scenes()}")
        return list(self._by_scene[scene])

    def frame_position(self, index: int, scene: str) -> int:
        """Position of dataset index ``index`` inside ``scene``."""
        return self._by_scene[scene].index(index)

    def __len__(self) -> int:
        return len(self.frames)
