"""Writes synthetic scenes as a nuScenes-style dataroot + Occ3D ground truth (docs/architecture.md "Data"), openable
by the devkit.

Layout (as nuScenes v1.0-mini + Occ3D-nuScenes):
  <root>/<version>/{category,attribute,visibility,instance,sensor,calibrated_sensor,ego_pose,log,scene,sample,
                   sample_data,sample_annotation,map}.json  + splits.json (train / val scene names)
  <root>/samples/<CAM>/<scene>__<CAM>__<timestamp>.jpg, <root>/samples/LIDAR_TOP/...pcd.bin
  <root>/maps/<token>.png   (semantic prior: driveable + sidewalk, 0.1 m / pixel)
  <root>/gts/<scene>/<sample_token>/labels.npz  (semantics, mask_lidar, mask_camera; uint8 200x200x16)
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from protoocc_ros.data.synthetic import world as W
from protoocc_ros.data.synthetic.frames import FrameOutput
from protoocc_ros.data.synthetic.raycast import PinholeView
from protoocc_ros.data.synthetic.rig import LIDAR_TRANSLATION, LIDAR_YAW_DEG
from protoocc_ros.geometry import invert_transform, make_transform, matrix_to_quaternion, transform_points, yaw_matrix

CATEGORIES = {W.CAR: "vehicle.car", W.TRUCK: "vehicle.truck", W.BUS: "vehicle.bus.rigid",
              W.PEDESTRIAN: "human.pedestrian.adult", W.BARRIER: "movable_object.barrier",
              W.CONE: "movable_object.trafficcone"}
ATTRIBUTES = ["vehicle.moving", "vehicle.parked", "vehicle.stopped", "pedestrian.moving", "pedestrian.standing"]
VISIBILITY = [("1", "v0-40"), ("2", "v40-60"), ("3", "v60-80"), ("4", "v80-100")]
MAP_RESOLUTION = 0.1   # metres per map pixel (devkit default)
MAP_SIZE_M = 300.0
BASE_TIMESTAMP_US = 1_533_151_603_547_590
FRAME_PERIOD_US = 500_000   # 2 Hz keyframes
ANNOTATION_RANGE_M = 50.0


def lidar_to_ego() -> np.ndarray:
    """4x4 LIDAR_TOP -> ego transform of the synthetic rig."""
    return make_transform(yaw_matrix(np.radians(LIDAR_YAW_DEG)), LIDAR_TRANSLATION)


def _pose(T: np.ndarray) -> tuple[list[float], list[float]]:
    return T[:3, 3].tolist(), matrix_to_quaternion(T[:3, :3]).tolist()


@dataclass
class FrameRecord:
    """What the table writer needs from one rendered frame (the heavy arrays are already on disk)."""

    index: int
    lidar_counts: dict[int, int]          # box id -> number of lidar points on it


@dataclass
class NuScenesWriter:
    """Collects the tables of all scenes and writes them at ``finish``."""

    root: Path
    version: str
    seed: int
    tables: dict[str, list[dict]] = field(default_factory=lambda: {n: [] for n in (
        "category", "attribute", "visibility", "instance", "sensor", "calibrated_sensor", "ego_pose", "log",
        "scene", "sample", "sample_data", "sample_annotation", "map")})
    _row: dict[str, int] = field(default_factory=dict)        # sample_data / annotation token -> row
    _last_ann: dict[str, str] = field(default_factory=dict)   # instance token -> its latest annotation token

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        for name in CATEGORIES.values():
            self.tables["category"].append({"token": self.token("category", name), "name": name,
                                            "description": f"synthetic {name}"})
        for name in ATTRIBUTES:
            self.tables["attribute"].append({"token": self.token("attribute", name), "name": name,
                                             "description": name})
        for tok, level in VISIBILITY:
            self.tables["visibility"].append({"token": tok, "level": level, "description": f"visibility {level}"})

    def token(self, *parts: object) -> str:
        """Deterministic 32-hex token."""
        return hashlib.md5("/".join([str(self.seed), *map(str, parts)]).encode()).hexdigest()

    # ----------------------------------------------------------------------------------------- files
    def image_path(self, scene: W.Scene, cam: str, frame: int) -> str:
        return f"samples/{cam}/{scene.name}__{cam}__{self.timestamp(scene, frame)}.jpg"

    def lidar_path(self, scene: W.Scene, frame: int) -> str:
        return f"samples/LIDAR_TOP/{scene.name}__LIDAR_TOP__{self.timestamp(scene, frame)}.pcd.bin"

    def sample_token(self, scene: W.Scene, frame: int) -> str:
        return self.token("sample", scene.name, frame)

    def timestamp(self, scene: W.Scene, frame: int) -> int:
        return BASE_TIMESTAMP_US + int(scene.name.split("-")[-1]) * 100_000_000 + frame * FRAME_PERIOD_US

    def write_frame_files(self, scene: W.Scene, frame: int, out: FrameOutput, cameras: list[PinholeView],
                          jpeg_quality: int) -> FrameRecord:
        """Images, lidar sweep and Occ3D labels.npz of one frame (safe to call from worker processes)."""
        for view, img in zip(cameras, out.images):
            path = self.root / self.image_path(scene, view.name, frame)
            path.parent.mkdir(parents=True, exist_ok=True)
            _ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
            path.write_bytes(buf.tobytes())
        pts = transform_points(invert_transform(lidar_to_ego()), out.lidar_points)
        intensity = np.where(out.lidar_boxes >= 0, 40.0, 10.0)
        cloud = np.column_stack([pts, intensity, out.lidar_rings]).astype(np.float32)  # (P, 5) x y z i ring
        path = self.root / self.lidar_path(scene, frame)
        path.parent.mkdir(parents=True, exist_ok=True)
        cloud.tofile(path)
        gt_dir = self.root / "gts" / scene.name / self.sample_token(scene, frame)
        gt_dir.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(gt_dir / "labels.npz", semantics=out.labels.astype(np.uint8),
                            mask_lidar=out.mask_lidar.astype(np.uint8), mask_camera=out.mask_camera.astype(np.uint8))
        ids, counts = np.unique(out.lidar_boxes[out.lidar_boxes >= 0], return_counts=True)
        return FrameRecord(frame, {int(i): int(c) for i, c in zip(ids, counts)})

    # ----------------------------------------------------------------------------------------- tables
    def add_scene(self, scene: W.Scene, records: list[FrameRecord], cameras: list[PinholeView],
                  image_size: tuple[int, int]) -> None:
        """Tables of one scene (call in scene order)."""
        t = self.tables
        log = self.token("log", scene.name)
        t["log"].append({"token": log, "logfile": f"synthetic-{scene.name}", "vehicle": "synthetic-ego",
                         "date_captured": "2024-01-01", "location": "synthetic-town"})
        sensors = [(v.name, "camera", v.cam2ego, v.K.tolist()) for v in cameras]
        sensors.append(("LIDAR_TOP", "lidar", lidar_to_ego(), []))
        calib = {}
        for name, modality, T, K in sensors:
            stoken = self.token("sensor", name)
            if not any(s["token"] == stoken for s in t["sensor"]):
                t["sensor"].append({"token": stoken, "channel": name, "modality": modality})
            calib[name] = self.token("calibrated_sensor", scene.name, name)
            trans, rot = _pose(T)
            t["calibrated_sensor"].append({"token": calib[name], "sensor_token": stoken, "translation": trans,
                                           "rotation": rot, "camera_intrinsic": K})
        n = len(records)
        samples = [self.sample_token(scene, r.index) for r in records]
        scene_token = self.token("scene", scene.name)
        t["scene"].append({"token": scene_token, "log_token": log, "nbr_samples": n, "first_sample_token": samples[0],
                           "last_sample_token": samples[-1], "name": scene.name,
                           "description": f"synthetic driving scene, seed {scene.seed}"})
        road2global = scene.road_to_global()
        prev_sd: dict[str, str] = {}
        for i, rec in enumerate(records):
            f = rec.index
            ts = self.timestamp(scene, f)
            t["sample"].append({"token": samples[i], "timestamp": ts, "prev": samples[i - 1] if i else "",
                                "next": samples[i + 1] if i + 1 < n else "", "scene_token": scene_token})
            ego2global = road2global @ make_transform(None, scene.ego_positions[f])
            trans, rot = _pose(ego2global)
            for name, modality, _, _ in sensors:
                sd = self.token("sample_data", scene.name, name, f)
                t["ego_pose"].append({"token": sd, "timestamp": ts, "rotation": rot, "translation": trans})
                is_cam = modality == "camera"
                t["sample_data"].append({
                    "token": sd, "sample_token": samples[i], "ego_pose_token": sd,
                    "calibrated_sensor_token": calib[name], "timestamp": ts,
                    "fileformat": "jpg" if is_cam else "pcd", "is_key_frame": True,
                    "height": image_size[0] if is_cam else 0, "width": image_size[1] if is_cam else 0,
                    "filename": self.image_path(scene, name, f) if is_cam else self.lidar_path(scene, f),
                    "prev": prev_sd.get(name, ""), "next": ""})
                self._row[sd] = len(t["sample_data"]) - 1
                if name in prev_sd:
                    t["sample_data"][self._row[prev_sd[name]]]["next"] = sd
                prev_sd[name] = sd
            self._annotate(scene, f, samples[i], ego2global, road2global, rec)

    def _annotate(self, scene: W.Scene, frame: int, sample: str, ego2global: np.ndarray, road2global: np.ndarray,
                  rec: FrameRecord) -> None:
        b = scene.boxes
        lo, hi = b.at_frame(frame)
        centre = (lo + hi) / 2
        near = np.linalg.norm(centre[:, :2] - scene.ego_positions[frame][:2], axis=1) < ANNOTATION_RANGE_M
        t = self.tables
        for k in np.nonzero(near & np.isin(b.cls, list(CATEGORIES)))[0]:
            cls = int(b.cls[k])
            inst = self.token("instance", scene.name, k)
            ann = self.token("sample_annotation", scene.name, k, frame)
            heading = float(b.heading[k])
            ext = hi[k] - lo[k]
            along_y = abs(np.sin(heading)) > 0.7
            length, width = (ext[1], ext[0]) if along_y else (ext[0], ext[1])
            yaw = heading + scene.global_yaw
            moving = bool(np.any(b.velocity[k] != 0))
            if cls == W.PEDESTRIAN:
                attrs = ["pedestrian.moving" if moving else "pedestrian.standing"]
            elif cls in (W.CAR, W.TRUCK, W.BUS):
                attrs = ["vehicle.moving" if moving else "vehicle.parked"]
            else:
                attrs = []
            pts = rec.lidar_counts.get(int(k), 0)
            record = {"token": ann, "sample_token": sample, "instance_token": inst,
                      "visibility_token": "4" if pts else "1",
                      "attribute_tokens": [self.token("attribute", a) for a in attrs],
                      "translation": transform_points(road2global, centre[k]).tolist(),
                      "size": [float(width), float(length), float(ext[2])],
                      "rotation": [float(np.cos(yaw / 2)), 0.0, 0.0, float(np.sin(yaw / 2))],
                      "prev": "", "next": "", "num_lidar_pts": pts, "num_radar_pts": 0}
            if inst in self._last_ann:
                t["sample_annotation"][self._row[self._last_ann[inst]]]["next"] = ann
                record["prev"] = self._last_ann[inst]
                inst_rec = t["instance"][self._row[inst]]
                inst_rec["nbr_annotations"] += 1
                inst_rec["last_annotation_token"] = ann
            else:
                self._row[inst] = len(t["instance"])
                t["instance"].append({"token": inst, "category_token": self.token("category", CATEGORIES[cls]),
                                      "nbr_annotations": 1, "first_annotation_token": ann,
                                      "last_annotation_token": ann})
            self._last_ann[inst] = ann
            self._row[ann] = len(t["sample_annotation"])
            t["sample_annotation"].append(record)

    def finish(self, scenes: list[W.Scene], splits: dict[str, list[str]]) -> None:
        """Write the map, all tables and splits.json."""
        token = self.token("map", "synthetic-town")
        filename = f"maps/{token}.png"
        (self.root / "maps").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(self.root / filename), semantic_prior(scenes))
        self.tables["map"] = [{"token": token, "log_tokens": [r["token"] for r in self.tables["log"]],
                               "category": "semantic_prior", "filename": filename}]
        table_dir = self.root / self.version
        table_dir.mkdir(parents=True, exist_ok=True)
        for name, rows in self.tables.items():
            (table_dir / f"{name}.json").write_text(json.dumps(rows, indent=0))
        (table_dir / "splits.json").write_text(json.dumps(splits, indent=2))


def semantic_prior(scenes: list[W.Scene]) -> np.ndarray:
    """uint8 map image (255 = driveable / sidewalk / other flat) of all scenes in the global frame."""
    size = int(MAP_SIZE_M / MAP_RESOLUTION)
    out = np.zeros((size, size), dtype=np.uint8)
    r, Hm = MAP_RESOLUTION, MAP_SIZE_M
    for sc in scenes:
        c, s = np.cos(sc.global_yaw), np.sin(sc.global_yaw)
        ox, oy = sc.global_offset[:2]
        x0, y0 = sc.ground.x0, sc.ground.y0
        # map pixel (px, py) -> global (r px, Hm - r py) -> road frame -> ground cell (column j = y, row i = x)
        M = np.array([[-s * r, -c * r, s * ox + c * (Hm - oy) - y0],
                      [c * r, -s * r, -c * ox + s * (Hm - oy) - x0]]) / W.VOXEL
        src = np.isin(sc.ground.classes, [W.ROAD, W.SIDEWALK, W.OTHER_FLAT]).astype(np.uint8) * 255
        out |= cv2.warpAffine(src, M, (size, size), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,  # type: ignore[call-overload]
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out
