"""replay_node parameters: one typed dataclass, declared and validated by protoocc_ros.ros.runtime.params."""
from __future__ import annotations

from dataclasses import dataclass

from protoocc_ros.ros.replay.bag_io import STORAGES
from protoocc_ros.ros.runtime.params import check, param

__all__ = ["ReplayNodeParams", "DEFAULT_RECORD_TOPICS", "IMAGE_FORMATS"]

DEFAULT_RECORD_TOPICS = ["/occupancy_node/occupancy", "/occupancy_node/occupied_voxels", "/occupancy_node/markers",
                         "/diagnostics"]
IMAGE_FORMATS = ("rgb8", "bgr8", "jpeg", "png")
HOUR_S = 3600.0


@dataclass
class ReplayNodeParams:
    dataroot: str = param("synthetic", "dataset root, rosbag2 path (directory, .mcap or .db3), or 'synthetic' for "
                                       "the embedded synthetic sample")
    source_format: str = param("auto", "how to read dataroot", choices=("auto", "occ3d_nuscenes", "semantic_kitti",
                                                                        "rosbag2"))
    version: str = param("auto", "nuScenes table version (v1.0-trainval, v1.0-mini, ...); auto = the one in dataroot")
    split: str = param("val", "dataset split to replay (Occ3D-nuScenes: train/val/mini_*; SemanticKITTI: "
                              "train/val/test)")
    scenes: list[str] = param([], "scene names / KITTI sequence ids to replay; empty = all of the split")
    cameras: list[str] = param([], "camera subset to publish; empty = all cameras of the dataset")
    bag_topics: list[str] = param([], "rosbag2: topics to republish; empty = all (except /clock and /replay/done)")
    sync_slop_s: float = param(0.05, "rosbag2: images within this many seconds of a set's first stamp form one camera "
                                     "set, one per camera topic (the occupancy node's sync_slop_s)", range=(0.0, 10.0))
    image_format: str = param("rgb8", "dataset images as Image rgb8 | bgr8, or CompressedImage jpeg | png",
                              choices=IMAGE_FORMATS)
    publish_ground_truth: bool = param(True, "publish /ground_truth/occupancy (255 outside mask_camera)")
    rate: float = param(1.0, "real-time factor for pacing by stamps; 0 = no pacing (use wait_for_topic to follow a "
                             "consumer)", range=(0.0, 1000.0))
    max_frame_gap_s: float = param(1.0, "cap on the stamp gap paced between two frames (scene changes jump in "
                                        "time)", range=(0.0, HOUR_S))
    wait_for_topic: str = param("", "after each frame wait for a message with the frame's header stamp on this topic")
    wait_timeout_s: float = param(10.0, "longest wait on wait_for_topic per frame, seconds", range=(0.001, HOUR_S))
    resend_after_s: float = param(0.0, "with wait_for_topic: publish the frame again (without ground truth) when no "
                                       "output came after this many seconds; 0 = never", range=(0.0, HOUR_S))
    wait_for_subscribers: list[str] = param([], "topics that must have a matched subscriber before the first frame")
    wait_for_topic_subscriptions: int = param(1, "before the first frame, wait until wait_for_topic has this many "
                                                 "subscriptions in the ROS graph, this node's own included (2 with "
                                                 "an evaluation_node: the consumer's first outputs must reach the "
                                                 "evaluator too)", range=(1, 100))
    startup_timeout_s: float = param(30.0, "longest wait for wait_for_subscribers / the wait_for_topic publisher, "
                                           "seconds", range=(0.0, HOUR_S))
    startup_settle_s: float = param(0.5, "pause after the waits above: DDS matches the subscriber side a moment "
                                         "after the publisher side, and a volatile subscriber misses what is sent "
                                         "before", range=(0.0, 60.0))
    loop: bool = param(False, "start over at the end instead of stopping")
    max_frames: int = param(0, "stop after this many frames in total; 0 = all", range=(0, 10**9))
    exit_when_done: bool = param(True, "exit after the last frame (otherwise keep spinning until shut down)")
    qos_depth: int = param(10, "history depth of the publishers (reliable, transient local)", range=(1, 10000))
    ack_timeout_s: float = param(10.0, "at the end, longest wait for reliable subscribers to acknowledge every "
                                       "message", range=(0.0, HOUR_S))
    record_path: str = param("", "rosbag2 directory to record record_topics into; empty = no recording")
    record_topics: list[str] = param(list(DEFAULT_RECORD_TOPICS), "topics to record")
    record_storage: str = param("mcap", "rosbag2 storage of the recording", choices=tuple(sorted(STORAGES)))
    record_drain_s: float = param(1.0, "after the last frame, keep recording this long, seconds", range=(0.0, 600.0))

    def validate(self) -> None:
        check(not (self.loop and self.record_path and not self.max_frames), "loop", self.loop,
              "false when recording without max_frames (the recording would never be closed cleanly)")
