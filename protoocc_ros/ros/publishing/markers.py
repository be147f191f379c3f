"""RViz MarkerArray of an occupancy grid (docs/architecture.md "ROS interfaces" ``~/markers``): one CUBE_LIST per
class, stale classes deleted.

Two builders of the same array: :meth:`OccupancyMarkers.build` returns the rclpy message (one
geometry_msgs/Point object per voxel: ~120 ms for 64k voxels) and :meth:`OccupancyMarkers.build_serialized`
writes its CDR bytes straight from the numpy coordinates (a few ms), for ``Publisher.publish(bytes)``.
The CDR layout is that of visualization_msgs 5.x (Jazzy, Kilted); :func:`serializer_matches_rclpy`
checks that rclpy reads the bytes back as exactly the message builder's array, so a node can fall back
to the message on another layout.
"""
from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np
from geometry_msgs.msg import Point
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from protoocc_ros.ros.publishing.occupied_points import OccupiedVoxels, VoxelCentres

__all__ = ["OccupancyMarkers", "serializer_matches_rclpy"]

CDR_LE_HEADER = b"\x00\x01\x00\x00"  # encapsulation: plain CDR, little endian


class OccupancyMarkers:
    """Builds MarkerArrays for successive grids, remembering which class markers exist.

    Marker id = class label, namespace ``ns``. A class drawn before but empty now gets a DELETE;
    with ``delete_all_first`` every array starts with DELETEALL instead (simpler for viewers, more traffic).
    colors: (C, 3) uint8 RGB per label (e.g. protoocc_ros.classes.OCC3D_COLORS).
    """

    def __init__(self, class_names: Sequence[str], colors: np.ndarray, free_label: int, ns: str = "occupancy",
                 alpha: float = 1.0, delete_all_first: bool = False) -> None:
        colors = np.asarray(colors)
        if colors.ndim != 2 or colors.shape[1] != 3 or len(colors) < len(class_names):
            raise ValueError(f"colors: shape {colors.shape}, expected ({len(class_names)}, 3) RGB, one per class")
        self.class_names = list(class_names)
        self.colors = colors.astype(np.float32) / 255.0
        self.free_label = int(free_label)
        self.ns = ns
        self.alpha = float(alpha)
        self.delete_all_first = delete_all_first
        self._shown: set[int] = set()

    def _plan(self, labels: np.ndarray, point_cloud_range: Sequence[float], voxel_size: float,
              occupied: OccupiedVoxels | None = None) -> list[tuple[int, int, np.ndarray | None]]:
        """(action, class label, (N, 3) float64 voxel centres or None) per marker of the next array; ``occupied``:
        the grid's occupied voxels when already found (the node shares them with the point cloud)."""
        if occupied is None:
            labels = np.asarray(labels)
            occupied = OccupiedVoxels.of(labels, None, VoxelCentres(point_cloud_range, voxel_size, labels.shape),
                                         self.free_label)
        plan: list[tuple[int, int, np.ndarray | None]] = []
        if self.delete_all_first:
            plan.append((Marker.DELETEALL, 0, None))
        present = []
        for label, xyz in occupied.by_class(len(self.class_names)):
            plan.append((Marker.ADD, label, xyz))
            present.append(label)
        if not self.delete_all_first:
            plan.extend((Marker.DELETE, label, None) for label in sorted(self._shown - set(present)))
        self._shown = set(present)
        return plan

    def build(self, labels: np.ndarray, point_cloud_range: Sequence[float], voxel_size: float,
              header: Header, occupied: OccupiedVoxels | None = None) -> MarkerArray:
        """MarkerArray for one (X, Y, Z) label grid in header.frame_id."""
        out = MarkerArray()
        for action, label, xyz in self._plan(labels, point_cloud_range, voxel_size, occupied):
            if action != Marker.ADD or xyz is None:
                out.markers.append(Marker(header=header, ns=self.ns, id=label, action=action))
                continue
            r, g, b = (float(v) for v in self.colors[label])
            marker = Marker(header=header, ns=self.ns, id=label, type=Marker.CUBE_LIST, action=Marker.ADD)
            marker.pose.orientation.w = 1.0
            marker.scale.x = marker.scale.y = marker.scale.z = float(voxel_size)
            marker.color = ColorRGBA(r=r, g=g, b=b, a=self.alpha)
            marker.text = self.class_names[label]
            marker.points = [Point(x=x, y=y, z=z) for x, y, z in xyz.tolist()]
            out.markers.append(marker)
        return out

    def build_serialized(self, labels: np.ndarray, point_cloud_range: Sequence[float], voxel_size: float,
                         header: Header, occupied: OccupiedVoxels | None = None) -> bytes:
        """The CDR bytes of what :meth:`build` returns (same markers, same order), without per-voxel objects."""
        cdr = _CdrWriter()
        plan = self._plan(labels, point_cloud_range, voxel_size, occupied)
        cdr.u32(len(plan))
        for action, label, xyz in plan:
            add = action == Marker.ADD
            cdr.i32(header.stamp.sec)
            cdr.u32(header.stamp.nanosec)
            cdr.string(header.frame_id)
            cdr.string(self.ns)
            cdr.i32(label)
            cdr.i32(Marker.CUBE_LIST if add else 0)
            cdr.i32(action)
            cdr.f64(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0)  # pose: position, orientation (x, y, z, w = 1, the default)
            cdr.f64(*([float(voxel_size)] * 3 if add else [0.0] * 3))  # scale
            cdr.f32(*([*self.colors[label].tolist(), self.alpha] if add else [0.0] * 4))  # color
            cdr.i32(0)
            cdr.u32(0)  # lifetime
            cdr.raw(b"\x00")  # frame_locked
            cdr.points(xyz if add else None)
            cdr.u32(0)  # colors
            cdr.string("")  # texture_resource
            cdr.i32(0)
            cdr.u32(0)
            cdr.string("")  # texture: header stamp, frame_id
            cdr.string("")  # texture.format
            cdr.u32(0)  # texture.data
            cdr.u32(0)  # uv_coordinates
            cdr.string(self.class_names[label] if add else "")  # text
            cdr.string("")  # mesh_resource
            cdr.string("")  # mesh_file.filename
            cdr.u32(0)  # mesh_file.data
            cdr.raw(b"\x00")  # mesh_use_embedded_materials
        return cdr.getvalue()


class _CdrWriter:
    """Little-endian plain CDR (XCDR1) with alignment relative to the payload start, as rmw serializes."""

    def __init__(self) -> None:
        self._parts: list[bytes | memoryview] = [CDR_LE_HEADER]
        self._size = 0  # bytes after the encapsulation header

    def raw(self, data: bytes | memoryview) -> None:
        self._parts.append(data)
        self._size += len(data)

    def _align(self, n: int) -> None:
        pad = -self._size % n
        if pad:
            self.raw(b"\x00" * pad)

    def u32(self, value: int) -> None:
        self._align(4)
        self.raw(struct.pack("<I", value))

    def i32(self, value: int) -> None:
        self._align(4)
        self.raw(struct.pack("<i", value))

    def f32(self, *values: float) -> None:
        self._align(4)
        self.raw(struct.pack(f"<{len(values)}f", *values))

    def f64(self, *values: float) -> None:
        self._align(8)
        self.raw(struct.pack(f"<{len(values)}d", *values))

    def string(self, text: str) -> None:
        data = text.encode() + b"\x00"
        self.u32(len(data))
        self.raw(data)

    def points(self, xyz: np.ndarray | None) -> None:
        """sequence<geometry_msgs/Point> from (N, 3) float64 (None = empty)."""
        n = 0 if xyz is None else len(xyz)
        self.u32(n)
        if n:
            self._align(8)
            self.raw(np.ascontiguousarray(xyz, dtype="<f8").data.cast("B"))  # joined once, not copied here

    def getvalue(self) -> bytes:
        return b"".join(self._parts)


def serializer_matches_rclpy() -> bool:
    """True when rclpy reads :meth:`OccupancyMarkers.build_serialized`'s bytes back as exactly the message
    :meth:`OccupancyMarkers.build` gives, with this distro's visualization_msgs (ADD with an odd voxel count,
    DELETE, DELETEALL, non-ASCII text). Bytes are not compared: rmw leaves alignment padding uninitialised."""
    from rclpy.serialization import deserialize_message

    labels = np.full((4, 3, 2), 2, dtype=np.uint8)
    labels[0, 0, 0], labels[1, 2, 1], labels[3, 1, 0] = 0, 1, 1
    colors = np.array([[255, 0, 0], [0, 128, 255], [0, 0, 0]], dtype=np.uint8)
    header = Header(frame_id="base_link")
    header.stamp.sec, header.stamp.nanosec = 1_700_000_000, 123_456_789
    for delete_all in (False, True):
        fast = OccupancyMarkers(["car", "vegetação", "free"], colors, 2, delete_all_first=delete_all, alpha=0.5)
        slow = OccupancyMarkers(["car", "vegetação", "free"], colors, 2, delete_all_first=delete_all, alpha=0.5)
        for grid in (labels, np.where(labels == 0, 2, labels).astype(np.uint8)):  # second: class 0 deleted
            args = (grid, [-1.0, -2.0, -0.5, 1.0, -0.5, 0.5], 0.5, header)
            try:
                if deserialize_message(fast.build_serialized(*args), MarkerArray) != slow.build(*args):
                    return False
            except Exception:
                return False
    return True
