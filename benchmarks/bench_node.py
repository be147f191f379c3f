"""occupancy_node cost over DDS (docs/benchmarks.md): end-to-end latency, the share outside the model, the maximum sustained
input rate and the node's memory over a long replay.

    python benchmarks/bench_node.py                               # latency (consumer-paced) + rate sweep, demo
    python benchmarks/bench_node.py --memory --duration 600       # RSS over a 10-minute replay (nohup ... &)
    python benchmarks/bench_node.py --memory --duration 60        # smoke run
    python benchmarks/bench_node.py --distortion plumb_bob --no-sweep   # + rectification cost per set

Three processes on a private ROS_DOMAIN_ID (201..230, localhost discovery): occupancy_node, replay_node
(synthetic sample, raw rgb8 images, no ground truth) and an in-process probe that records, per
camera set, the arrival of the first camera's image (= when the replay published the set) and of
the grid on /occupancy_node/occupancy (raw CDR, matched by header stamp), plus the node's
/diagnostics (mean per stage: queue, decode_tf, preprocess, inference, publish, total).

* latency: the replay waits for each grid before the next set (consumer-paced). End to end = grid
  arrival - image arrival; outside the model = end to end - the node's inference stage (ProtoOcc.predict).
  Stage means exclude the warm-up sets (differences of the cumulative diagnostics).
* rate sweep: the replay publishes at fixed rates (no waiting); a rate is sustained when the node
  dropped no set (inference_queue_size 1 drops the older set when the model is busy).
* memory: consumer-paced looping replay for --duration seconds; VmRSS / VmHWM of the node sampled
  from /proc; slope (MB/min, least squares) after the warm-up.
* --distortion MODEL: the probe republishes the replay's CameraInfo with that distortion (plumb_bob,
  rational_polynomial, equidistant) on /bench_distorted/<camera>/camera_info, which the node reads, so it
  rectifies every image (the node's 'rectify' stage = the cost per set); the same rectification of six
  nuScenes-size 1600x900 images is timed in this process too (maps once, then remap per set).
Writes benchmarks/results/node.json + node.png, or node_memory.json + node_memory.png.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    REPO, RESULTS_DIR, BenchmarkError, finish, header, load_average, print_table, pyplot, save_figure, summarize_ms,
    wait_for_low_load,
)

from protoocc_ros.ros.runtime.dds import dds_profile_env  # noqa: E402
from protoocc_ros.ros.runtime.spin import ros_context  # noqa: E402
from protoocc_ros.tools.processes import NodeProcess  # noqa: E402

# A private DDS domain on this host (tests use 1..200), inherited by the node processes.
os.environ.setdefault("ROS_DOMAIN_ID", str(201 + os.getpid() % 30))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.update(dds_profile_env())  # the package's Fast DDS profile, as the launch files use (PROTOOCC_DDS_PROFILE)

NODE_MODULE = "protoocc_ros.ros.nodes.occupancy_node"
STARTED: list[NodeProcess] = []  # every process this run started; stopped in run()'s finally
REPLAY_MODULE = "protoocc_ros.ros.nodes.replay_node"
NODE = "occupancy_node"
GRID_TOPIC = "/occupancy_node/occupancy"
FRAME_PERIOD_S = 0.5  # synthetic sample: 2 Hz keyframes (replay `rate` is a factor on stamp gaps)
STAGES = ("queue", "decode_tf", "rectify", "preprocess", "inference", "publish_grid", "publish", "total")
DISTORTIONS = {"plumb_bob": [-0.30, 0.10, 0.001, -0.001, 0.0],
               "rational_polynomial": [-0.25, 0.08, 0.0005, 0.0005, 0.0, 0.02, 0.0, 0.0],
               "equidistant": [0.10, -0.05, 0.01, -0.002]}
DISTORTED_INFO = "/bench_distorted/{camera}/camera_info"


class Probe:
    """In-process subscriber: image / grid arrival times (paired by stamp) and the node's /diagnostics."""

    def __init__(self, context: Any, image_topic: str, compressed: bool = False, distortion: str = "",
                 cameras: list[str] | None = None) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import CompressedImage, Image

        from protoocc_ros.msg import SemanticOccupancyGrid
        from protoocc_ros.ros.runtime.qos import reliable_qos

        self.node = rclpy.create_node("bench_probe", context=context)
        self.lock = threading.Lock()
        self.inputs: list[tuple[int, float]] = []    # (stamp ns, arrival monotonic s)
        self.outputs: list[tuple[int, float]] = []
        self.e2e: list[tuple[float, float]] = []     # (grid arrival, end-to-end s)
        self._pending: dict[int, float] = {}
        self.diagnostics: list[dict[str, Any]] = []
        self.camera_size: tuple[int, int] | None = None  # (width, height) of the relayed CameraInfo
        self.grid_sub = self.node.create_subscription(SemanticOccupancyGrid, GRID_TOPIC, self._on_grid,
                                                      reliable_qos(50), raw=True)
        self.node.create_subscription(CompressedImage if compressed else Image, image_topic, self._on_image,
                                      reliable_qos(50), raw=True)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, reliable_qos(20))
        if distortion:  # CameraInfo relay: the replay's, with distortion, on the topics the node reads
            from sensor_msgs.msg import CameraInfo

            for cam in cameras or []:
                relay = self.node.create_publisher(CameraInfo, DISTORTED_INFO.format(camera=cam), reliable_qos(10))
                self.node.create_subscription(CameraInfo, f"/cameras/{cam}/camera_info",
                                              self._distort(relay, distortion), reliable_qos(10))
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException

        try:
            self.executor.spin()
        except ExternalShutdownException:
            pass

    def _distort(self, relay: Any, model: str) -> Any:
        def callback(msg: Any) -> None:
            msg.distortion_model, msg.d = model, DISTORTIONS[model]
            self.camera_size = (int(msg.width), int(msg.height))
            relay.publish(msg)
        return callback

    def _on_image(self, data: bytes) -> None:
        from protoocc_ros.ros.replay.types import header_stamp_ns

        now, stamp = time.monotonic(), header_stamp_ns(data)
        with self.lock:
            self.inputs.append((stamp, now))
            self._pending[stamp] = now

    def _on_grid(self, data: bytes) -> None:
        from protoocc_ros.ros.replay.types import header_stamp_ns

        now, stamp = time.monotonic(), header_stamp_ns(data)
        with self.lock:
            self.outputs.append((stamp, now))
            start = self._pending.pop(stamp, None)
            if start is not None:
                self.e2e.append((now, now - start))

    def _on_diag(self, msg: Any) -> None:
        from protoocc_ros.ros.runtime.diagnostics import status_values

        latency = status_values(msg, f"{NODE}: latency")
        if not latency:
            return
        output = status_values(msg, f"{NODE}: output")
        drops = status_values(msg, f"{NODE}: dropped")
        with self.lock:
            self.diagnostics.append({"t": time.monotonic(), "sets": int(output.get("sets_published", 0)),
                                     "latency": {k: float(v) for k, v in latency.items()},
                                     "drops": {k: int(v) for k, v in drops.items()}})

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"inputs": len(self.inputs), "outputs": len(self.outputs), "e2e": len(self.e2e),
                    "diag": self.diagnostics[-1] if self.diagnostics else None}

    def wait(self, predicate: Any, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise BenchmarkError(f"timed out after {timeout_s:.0f} s waiting for {what}")
            time.sleep(0.05)

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()


def stage_means_between(first: dict[str, Any], last: dict[str, Any]) -> dict[str, float]:
    """Mean ms per stage over the sets published between two cumulative diagnostics snapshots."""
    n = last["sets"] - first["sets"]
    if n <= 0:
        raise BenchmarkError(f"no sets were published between the diagnostics snapshots ({first['sets']} -> "
                             f"{last['sets']}); raise --frames")
    out = {}
    for stage in STAGES:
        key = f"{stage}.mean_ms"
        if key not in last["latency"]:  # a node from before this stage existed (publish_grid: issue 24)
            continue
        out[stage] = (last["latency"][key] * last["sets"] - first["latency"].get(key, 0.0) * first["sets"]) / n
    out["sets"] = n
    return out


def drops_between(first: dict[str, Any] | None, last: dict[str, Any] | None) -> dict[str, int]:
    a, b = (first or {}).get("drops", {}), (last or {}).get("drops", {})
    return {k: v - a.get(k, 0) for k, v in b.items() if v - a.get(k, 0) > 0}


# -- processes ------------------------------------------------------------------------------------------
def start_node(tmp: Path, args: argparse.Namespace) -> NodeProcess:
    params = {"config_file": args.config, "device": args.device, "publish_markers": not args.no_markers,
              "publish_occupied_voxels": not args.no_cloud,
              "image_transport": "raw" if args.image_format == "rgb8" else "compressed",
              "input_reliability": args.input_reliability, "config_overrides": args.config_overrides or [""],
              "torch_threads": args.node_threads}
    if args.checkpoint:
        params["checkpoint"] = args.checkpoint
    if args.distortion:
        params["camera_info_topic_pattern"] = DISTORTED_INFO
    STARTED.append(NodeProcess(NODE_MODULE, tmp / "occupancy_node.log", params=params, cwd=REPO))
    return STARTED[-1]


def start_replay(tmp: Path, args: argparse.Namespace, name: str, *, rate_hz: float | None, frames: int,
                 loop: bool = True) -> NodeProcess:
    """Consumer-paced (rate_hz None) or fixed-rate replay of the synthetic sample without ground truth."""
    topics = [t for cam in args.cameras for t in (image_topic(cam, args), f"/cameras/{cam}/camera_info")]
    params: dict[str, Any] = {"dataroot": args.dataroot, "split": args.split, "publish_ground_truth": False,
                              "image_format": args.image_format, "loop": loop, "max_frames": frames,
                              "wait_for_subscribers": topics,  # every input of the node matched, not only the probe
                              "startup_timeout_s": 120.0, "startup_settle_s": 1.0, "max_frame_gap_s": FRAME_PERIOD_S}
    if rate_hz is None:  # a set the node dropped (e.g. tf_stale) stalls the replay for wait_timeout_s
        params.update(rate=0.0, wait_for_topic=GRID_TOPIC, wait_timeout_s=args.wait_timeout_s,
                      resend_after_s=args.resend_s)
    else:
        params.update(rate=rate_hz * FRAME_PERIOD_S)
    STARTED.append(NodeProcess(REPLAY_MODULE, tmp / f"replay_{name}.log", params=params, cwd=REPO))
    return STARTED[-1]


def image_topic(camera: str, args: argparse.Namespace) -> str:
    return f"/cameras/{camera}/image_raw" + ("" if args.image_format == "rgb8" else "/compressed")


def wait_replay(replay: NodeProcess, timeout_s: float) -> dict[str, Any]:
    """Wait for the replay to exit; returns its done summary (frames, resends, wait_timeouts, ...)."""
    import json

    code = replay.wait(timeout_s)
    if code != 0:
        raise BenchmarkError(f"replay_node exited with {code}:\n{replay.output()[-2000:]}")
    for line in replay.output().splitlines():
        if "replay done: " in line:
            return json.loads(line.split("replay done: ", 1)[1])
    return {}


def node_ready(probe: Probe, node: NodeProcess, timeout_s: float = 180.0) -> None:
    """The node loaded its model (diagnostics flow) and its grid publisher matched the probe."""
    def ready() -> bool:
        if node.proc.poll() is not None:
            raise BenchmarkError(f"occupancy_node exited with {node.proc.returncode}:\n{node.output()[-2000:]}")
        return probe.grid_sub.get_publisher_count() > 0 and probe.snapshot()["diag"] is not None
    probe.wait(ready, timeout_s, "occupancy_node to start")


def checkpoint_used(node: NodeProcess) -> str:
    out = node.output()
    for line in out.splitlines():
        if "loaded checkpoint" in line:
            return line.split("loaded checkpoint", 1)[1].strip()
    return "none (random weights)" if "NO CHECKPOINT" in out else "unknown"


# -- phases ---------------------------------------------------------------------------------------------
def latency_phase(probe: Probe, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Consumer-paced replay: end-to-end latency per set and the node's stage means after the warm-up."""
    before = probe.snapshot()
    load_start = load_average()
    replay = start_replay(tmp, args, "latency", rate_hz=None, frames=args.warmup + args.frames)
    t0 = time.monotonic()
    # the diagnostics snapshot once the node has finished the warm-up sets (its counters tick after publishing)
    sets0 = (before["diag"] or {}).get("sets", 0)
    probe.wait(lambda: (probe.snapshot()["diag"] or {}).get("sets", 0) >= sets0 + args.warmup, 300.0,
               "the warm-up sets")
    first = probe.snapshot()["diag"]
    summary = wait_replay(replay, 60.0 + 30.0 * args.frames)
    wall = time.monotonic() - t0
    time.sleep(2.5 * args.diag_period)  # the last diagnostics after the last set
    last = probe.snapshot()["diag"]
    replay.stop()
    # the grids of exactly the sets inside the diagnostics window (one grid per set, in order)
    lo, hi = (before["e2e"] + snap["sets"] - sets0 for snap in (first, last))
    with probe.lock:
        e2e = [d for _, d in probe.e2e[lo:hi]]
    stages = stage_means_between(first, last)
    e2e_ms = summarize_ms(e2e)
    mean_e2e = e2e_ms["mean_ms"]
    # the grid is the first message of the publish stage: what the probe sees before the node's own stages
    # is DDS in + camera-set completion + grid message building + DDS out
    transport = mean_e2e - sum(stages[k] for k in ("queue", "decode_tf", "rectify", "preprocess", "inference"))
    worker_ms = stages["total"] - stages["queue"]
    return {
        "frames_timed": len(e2e), "sets_in_diagnostics_window": stages["sets"], "warmup": args.warmup,
        "wall_s": round(wall, 2), "end_to_end_samples_ms": [round(1e3 * x, 2) for x in e2e],
        "consumer_paced_rate_hz": round((args.warmup + args.frames) / wall, 3),
        "end_to_end": e2e_ms, "node_stage_means_ms": {k: round(v, 3) for k, v in stages.items()},
        "model_ms": round(stages["inference"], 3),
        "after_grid_ms": (round(stages["publish"] - stages["publish_grid"], 3) if "publish_grid" in stages
                          else None),  # cloud + markers + 2D grid, published after the grid
        "transport_sync_grid_msg_ms": round(transport, 3),
        "outside_model_share_of_end_to_end": round(1.0 - stages["inference"] / mean_e2e, 4),
        "outside_model_share_of_worker": round(1.0 - stages["inference"] / worker_ms, 4),
        "worker_ms_per_set": round(worker_ms, 3),
        "max_rate_estimate_hz": round(1e3 / worker_ms, 3),
        "drops": drops_between(first, last), "load_average": [load_start, load_average()],
        "replay": {k: summary.get(k) for k in ("frames", "resends", "wait_timeouts")},
        "node_drops_total": (last or {}).get("drops", {}),
    }


def rate_phase(probe: Probe, tmp: Path, args: argparse.Namespace, rates: list[float]) -> list[dict[str, Any]]:
    """Fixed-rate replays: achieved input rate, output rate and dropped sets per requested rate."""
    from tqdm import tqdm

    results = []
    for hz in tqdm(rates, desc="rate sweep", leave=False):
        time.sleep(1.5 * args.diag_period)
        first = probe.snapshot()
        with probe.lock:
            n_in, n_out = len(probe.inputs), len(probe.outputs)
        load_start = load_average()
        replay = start_replay(tmp, args, f"rate_{hz:.2f}", rate_hz=hz, frames=args.sweep_frames)
        summary = wait_replay(replay, 120.0 + args.sweep_frames / hz * 3)
        time.sleep(max(3.0, 2.5 * args.diag_period))  # the last set's inference and diagnostics
        last = probe.snapshot()
        replay.stop()
        with probe.lock:
            ins = [t for _, t in probe.inputs[n_in:]]
            outs = [t for _, t in probe.outputs[n_out:]]
        achieved = (len(ins) - 1) / (ins[-1] - ins[0]) if len(ins) > 1 else 0.0
        out_rate = (len(outs) - 1) / (outs[-1] - outs[0]) if len(outs) > 1 else 0.0
        drops = drops_between(first["diag"], last["diag"])
        results.append({"requested_hz": hz, "input_hz": round(achieved, 3), "output_hz": round(out_rate, 3),
                        "inputs": len(ins), "outputs": len(outs), "drops": drops,
                        "sustained": not drops and len(outs) >= len(ins), "replay_frames": summary.get("frames"),
                        "load_average": [load_start, load_average()]})
        print(f"[bench_node] {hz:.2f} Hz requested: in {achieved:.2f} Hz, out {out_rate:.2f} Hz, "
              f"{len(outs)}/{len(ins)} sets, drops {drops}", flush=True)
    return results


def read_rss(pid: int) -> dict[str, float]:
    """VmRSS, VmHWM (peak) and the RSS split of a process, MB: RssAnon (heap: what a leak grows), RssShmem
    (DDS shared-memory segments as their pages are touched, bounded by the segment sizes), RssFile."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:", "RssAnon:", "RssShmem:", "RssFile:")):
            key, kb = line.split(":", 1)
            values[key] = int(kb.split()[0]) / 1024.0
    return values


def slope_mb_per_min(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) samples in MB/min."""
    if len(samples) < 2:
        return float("nan")
    ts, ys = [t for t, _ in samples], [y for _, y in samples]
    mt, my = statistics.fmean(ts), statistics.fmean(ys)
    var = sum((t - mt) ** 2 for t in ts)
    return 60.0 * sum((t - mt) * (y - my) for t, y in zip(ts, ys)) / var if var > 0 else float("nan")


def memory_phase(probe: Probe, node: NodeProcess, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Looping consumer-paced replay for --duration s; RSS of the node every --sample-s s."""
    from tqdm import tqdm

    warmup_s = args.memory_warmup_s if args.memory_warmup_s is not None else min(120.0, 0.2 * args.duration)
    replay = start_replay(tmp, args, "memory", rate_hz=None, frames=0)
    t0 = time.monotonic()
    samples: list[dict[str, float]] = []
    loads = []
    with tqdm(total=int(args.duration), desc="memory replay [s]", leave=False) as bar:
        while (elapsed := time.monotonic() - t0) < args.duration:
            if replay.proc.poll() is not None or node.proc.poll() is not None:
                raise BenchmarkError(f"a process ended early:\nreplay: {replay.output()[-1500:]}\n"
                                     f"node: {node.output()[-1500:]}")
            rss = read_rss(node.proc.pid)
            snap = probe.snapshot()
            samples.append({"t_s": round(elapsed, 2), "rss_mb": round(rss["VmRSS"], 2),
                            "hwm_mb": round(rss["VmHWM"], 2), "anon_mb": round(rss.get("RssAnon", 0.0), 2),
                            "shmem_mb": round(rss.get("RssShmem", 0.0), 2), "sets": snap["outputs"]})
            if len(samples) % 30 == 1:
                loads.append((round(elapsed, 1), load_average()))
            bar.n = int(elapsed)
            bar.refresh()
            time.sleep(args.sample_s)
    replay.stop()
    after = [(s["t_s"], s["rss_mb"]) for s in samples if s["t_s"] >= warmup_s]
    at_warm = next(s for s in samples if s["t_s"] >= warmup_s) if after else samples[-1]
    diag = probe.snapshot()["diag"] or {}
    return {"duration_s": args.duration, "warmup_s": warmup_s, "sample_s": args.sample_s,
            "node_drops": diag.get("drops", {}), "node_sets_published": diag.get("sets"),
            "sets_published": samples[-1]["sets"] - samples[0]["sets"],
            "rss_start_mb": samples[0]["rss_mb"], "rss_after_warmup_mb": at_warm["rss_mb"],
            "rss_end_mb": samples[-1]["rss_mb"],
            "peak_rss_after_warmup_mb": at_warm["hwm_mb"], "peak_rss_end_mb": samples[-1]["hwm_mb"],
            "peak_growth_after_warmup_mb": round(samples[-1]["hwm_mb"] - at_warm["hwm_mb"], 2),
            "rss_slope_mb_per_min": round(slope_mb_per_min(after), 4),
            "anon_slope_mb_per_min": round(slope_mb_per_min(
                [(s["t_s"], s["anon_mb"]) for s in samples if s["t_s"] >= warmup_s]), 4),
            "anon_after_warmup_mb": at_warm["anon_mb"], "anon_end_mb": samples[-1]["anon_mb"],
            "shmem_after_warmup_mb": at_warm["shmem_mb"], "shmem_end_mb": samples[-1]["shmem_mb"],
            "load_average_samples": loads, "samples": samples}


# -- output ---------------------------------------------------------------------------------------------
def latency_table(result: dict[str, Any]) -> str:
    lat = result["latency"]
    st = lat["node_stage_means_ms"]
    e2e = lat["end_to_end"]["mean_ms"]
    transport = lat["transport_sync_grid_msg_ms"]
    rows = [["end to end (image published -> grid received)", f"{e2e:.1f}", "100.0"],
            ["  DDS in + camera-set completion + grid message + DDS out", f"{transport:.1f}",
             f"{100 * transport / e2e:.1f}"]]
    for stage in ("queue", "decode_tf", "rectify", "preprocess", "inference"):
        rows.append([f"  {stage}", f"{st[stage]:.1f}", f"{100 * st[stage] / e2e:.1f}"])
    rows.append(["  publish (grid + cloud + markers + 2D; grid is out first)", f"{st['publish']:.1f}",
                 "(after grid)"])
    if lat.get("after_grid_ms") is not None:
        rows.append(["    of which after the grid: cloud + markers + 2D grid", f"{lat['after_grid_ms']:.1f}",
                     "(after grid)"])
    return print_table(rows, ["stage (mean over timed sets)", "ms", "% of end to end"])


def plot(result: dict[str, Any], path: Path) -> Path:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    st = result["latency"]["node_stage_means_ms"]
    e2e = result["latency"]["end_to_end"]["mean_ms"]
    parts = {"DDS + sync + grid msg": result["latency"]["transport_sync_grid_msg_ms"], "queue": st["queue"],
             "decode+TF": st["decode_tf"], "rectify": st["rectify"],
             "preprocess": st["preprocess"], "model": st["inference"], "publish (all 3 topics)": st["publish"]}
    left = 0.0
    for i, (k, v) in enumerate(parts.items()):
        axes[0].barh(0, v, left=left, color=plt.cm.tab10(i), label=f"{k} {v:.1f} ms")
        left += v
    axes[0].axvline(e2e, color="k", ls="--", lw=1)
    axes[0].set_yticks([])
    axes[0].set_xlabel("ms per camera set (mean); dashed: grid received")
    axes[0].legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=3)
    axes[0].set_title(f"{result['config']}: {100 * result['latency']['outside_model_share_of_end_to_end']:.1f} % "
                      "of end-to-end outside the model", fontsize=9)
    sweep = result.get("rate_sweep", [])
    if sweep:
        xs = [s["input_hz"] for s in sweep]
        axes[1].plot(xs, [s["output_hz"] for s in sweep], "o-", label="grids out")
        axes[1].plot(xs, xs, "k:", lw=1, label="out = in")
        for s in sweep:
            if s["drops"]:
                axes[1].annotate(f"{sum(s['drops'].values())} dropped", (s["input_hz"], s["output_hz"]), fontsize=7)
        axes[1].set_xlabel("camera sets in [Hz]")
        axes[1].set_ylabel("grids out [Hz]")
        axes[1].legend(fontsize=8)
        axes[1].set_title(f"max sustained input rate {result.get('max_sustained_hz')} Hz", fontsize=9)
    m = result["machine"]
    fig.suptitle(f"occupancy_node over DDS — {m['cpu_model']}, {m['logical_cpus']} CPUs", fontsize=10)
    return save_figure(fig, path)


def plot_memory(result: dict[str, Any], path: Path) -> Path:
    plt = pyplot()
    mem = result["memory"]
    ts = [s["t_s"] / 60 for s in mem["samples"]]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.plot(ts, [s["rss_mb"] for s in mem["samples"]], label="RSS")
    ax.plot(ts, [s["hwm_mb"] for s in mem["samples"]], label="peak RSS (VmHWM)")
    ax.plot(ts, [s.get("anon_mb", float("nan")) for s in mem["samples"]], label="RssAnon (heap)")
    ax.plot(ts, [s.get("shmem_mb", float("nan")) for s in mem["samples"]], label="RssShmem (DDS segments)")
    ax.axvline(mem["warmup_s"] / 60, color="k", ls=":", lw=1, label="end of warm-up")
    ax.set_xlabel("minutes")
    ax.set_ylabel("MB")
    ax.set_title(f"occupancy_node ({result['config']}) memory, {mem['sets_published']} sets: slope after warm-up "
                 f"RSS {mem['rss_slope_mb_per_min']:+.3f} MB/min, heap {mem.get('anon_slope_mb_per_min', float('nan')):+.3f} "
                 "MB/min", fontsize=9)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def offline_rectification(model: str, cameras: int, size: tuple[int, int] = (1600, 900), sets: int = 20) -> dict:
    """The node's rectification (rectification.py) of ``cameras`` images of ``size`` (w, h), in this process:
    maps once per calibration, then cv2.remap per image; ms per set (median over ``sets``)."""
    import numpy as np

    from protoocc_ros.ros.publishing.msg_builders import camera_info_msg
    from protoocc_ros.ros.inputs.rectification import camera_model, rectify_image, rectify_maps

    w, h = size
    K = np.array([[1266.0, 0.0, w / 2], [0.0, 1266.0, h / 2], [0.0, 0.0, 1.0]])
    info = camera_info_msg(K, w, h, 0, "cam")
    info.distortion_model, info.d = model, DISTORTIONS[model]
    cam = camera_model(info)
    t0 = time.perf_counter()
    maps = rectify_maps(cam)
    maps_ms = 1e3 * (time.perf_counter() - t0)
    images = [np.random.default_rng(i).integers(0, 256, (h, w, 3), dtype=np.uint8) for i in range(cameras)]
    per_set = []
    for _ in range(sets):
        t0 = time.perf_counter()
        for img in images:
            rectify_image(cam, img, maps)
        per_set.append(1e3 * (time.perf_counter() - t0))
    return {"images_wxh": [w, h], "maps_ms_per_camera": round(maps_ms, 2),
            "rectify_ms_per_set": round(statistics.median(per_set), 2), "sets": sets}


def summary_table(result: dict[str, Any]) -> str | None:
    """Latency table (latency run) or the memory figures (memory run), printed."""
    if "memory" in result:
        m = result["memory"]
        print(f"[bench_node] RSS slope after warm-up {m['rss_slope_mb_per_min']:+.4f} MB/min (heap "
              f"{m['anon_slope_mb_per_min']:+.4f} MB/min, {m['anon_after_warmup_mb']:.1f} -> {m['anon_end_mb']:.1f} MB; "
              f"DDS shared memory {m['shmem_after_warmup_mb']:.1f} -> {m['shmem_end_mb']:.1f} MB), peak growth "
              f"{m['peak_growth_after_warmup_mb']:+.2f} MB over {m['duration_s'] - m['warmup_s']:.0f} s", flush=True)
        return None
    print(f"[bench_node] outside the model: {100 * result['latency']['outside_model_share_of_end_to_end']:.1f} % "
          f"of end to end; max sustained input rate {result.get('max_sustained_hz')} Hz", flush=True)
    rect = result.get("rectification")
    if rect:
        off = rect["offline"]
        print(f"[bench_node] rectification ({rect['distortion_model']}, {rect['cameras']} cameras): in the node "
              f"{rect['node_rectify_ms_per_set']:.2f} ms per set at {rect['node_images_wxh']} (of "
              f"{result['latency']['worker_ms_per_set']:.1f} ms worker time); {off['rectify_ms_per_set']:.1f} ms per "
              f"set at {off['images_wxh']} (+ {off['maps_ms_per_camera']:.0f} ms maps per camera, once per "
              "calibration)", flush=True)
    return latency_table(result)


def plot_any(result: dict[str, Any], path: Path) -> Path:
    return plot_memory(result, path) if "memory" in result else plot(result, path)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import tempfile

    from protoocc_ros.data.synthetic import ensure_sample

    ensure_sample()  # generated once, before any process needs it
    if args.max_load is not None:
        wait_for_low_load(args.max_load)
    result: dict[str, Any] = {**header(), "config": args.config, "device": args.device,
                              "config_overrides": args.config_overrides, "image_format": args.image_format,
                              "input_reliability": args.input_reliability,
                              "publish": {"markers": not args.no_markers, "occupied_voxels": not args.no_cloud},
                              "ros_domain_id": int(os.environ["ROS_DOMAIN_ID"]),
                              "notes": __doc__.split("\n\n")[2].replace("\n", " ")}
    tmp = Path(tempfile.mkdtemp(prefix="bench_node_"))
    result["logs"] = str(tmp)
    node = start_node(tmp, args)
    try:
        with ros_context() as ctx:
            probe = Probe(ctx, image_topic(args.camera, args), args.image_format != "rgb8", args.distortion,
                          args.cameras)
            try:
                node_ready(probe, node)
                result["checkpoint"] = checkpoint_used(node)
                result["node_torch_threads"] = args.node_threads or f"torch default ({os.cpu_count()} = logical CPUs)"
                if args.memory:
                    result["memory"] = memory_phase(probe, node, tmp, args)
                else:
                    result["latency"] = latency_phase(probe, tmp, args)
                    if args.distortion:
                        result["rectification"] = {
                            "distortion_model": args.distortion, "cameras": len(args.cameras),
                            "node_images_wxh": probe.camera_size,
                            "node_rectify_ms_per_set": result["latency"]["node_stage_means_ms"]["rectify"],
                            "offline": offline_rectification(args.distortion, len(args.cameras))}
                    if args.rates or not args.no_sweep:
                        est = result["latency"]["max_rate_estimate_hz"]
                        rates = args.rates or [round(est * f, 2) for f in (0.5, 0.75, 0.9, 1.0, 1.15, 1.4)]
                        sweep = rate_phase(probe, tmp, args, rates)
                        result["rate_sweep"] = sweep
                        ok = [s["input_hz"] for s in sweep if s["sustained"]]
                        result["max_sustained_hz"] = round(max(ok), 2) if ok else None
            finally:
                probe.close()
    finally:
        for proc in reversed(STARTED):  # replays first, the node last
            code = proc.stop()
        result["node_exit_code"] = code
    result["load_average_end"] = load_average()
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="demo", help="occupancy_node config_file")
    p.add_argument("--checkpoint", default="", help="node checkpoint ('' = the bundled demo one when present)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--node-threads", type=int, default=0, help="node torch_threads (0 = torch's default)")
    p.add_argument("--dataroot", default="synthetic")
    p.add_argument("--split", default="train", help="replayed split (train: 80 frames before the loop wraps)")
    p.add_argument("--camera", default="CAM_FRONT", help="camera whose image arrival starts the clock")
    p.add_argument("--image-format", default="rgb8", choices=["rgb8", "jpeg"],
                   help="replayed images: raw rgb8 Image or jpeg CompressedImage (node image_transport follows)")
    p.add_argument("--input-reliability", default="reliable", choices=["reliable", "best_effort"],
                   help="node input_reliability (reliable: no image lost on the way from the replay)")
    p.add_argument("--config-override", dest="config_overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="node config_overrides entry, e.g. model.decoder.classifier_layers=2 for an older checkpoint")
    p.add_argument("--resend-s", type=float, default=0.0, help="replay resend_after_s (consumer-paced phases; "
                   "0 = never: with reliable inputs nothing is lost, and the node drops a repeated set anyway)")
    p.add_argument("--wait-timeout-s", type=float, default=15.0, help="replay wait_timeout_s: how long a set "
                   "the node dropped stalls the consumer-paced replay")
    p.add_argument("--warmup", type=int, default=5, help="sets before timing starts")
    p.add_argument("--frames", type=int, default=60, help="timed sets (consumer-paced)")
    p.add_argument("--no-sweep", action="store_true", help="skip the fixed-rate sweep")
    p.add_argument("--rates", type=float, nargs="*", default=None, help="sweep rates in Hz (default: around "
                   "the estimate from the latency phase)")
    p.add_argument("--sweep-frames", type=int, default=60, help="sets per sweep rate")
    p.add_argument("--no-markers", action="store_true", help="node: publish_markers false")
    p.add_argument("--no-cloud", action="store_true", help="node: publish_occupied_voxels false")
    p.add_argument("--memory", action="store_true", help="run the memory replay instead of latency + sweep")
    p.add_argument("--distortion", default="", choices=["", *DISTORTIONS],
                   help="give the node distorted CameraInfo (relayed): measures the rectification per set")
    p.add_argument("--duration", type=float, default=600.0, help="memory replay length, seconds")
    p.add_argument("--sample-s", type=float, default=2.0, help="RSS sampling period, seconds")
    p.add_argument("--memory-warmup-s", type=float, default=None, help="default: min(120, 20 %% of duration)")
    p.add_argument("--diag-period", type=float, default=1.0, help="the node's diagnostics_period_s")
    p.add_argument("--max-load", type=float, default=None, help="wait until the 1-min load is below this")
    p.add_argument("--out", type=Path, default=None, help="JSON path (default results/node.json or node_memory.json)")
    args = p.parse_args(argv)
    if args.out is None:
        args.out = RESULTS_DIR / ("node_memory.json" if args.memory else "node.json")
    if args.frames < 2 or args.warmup < 1:
        p.error("--frames must be >= 2 and --warmup >= 1")
    from protoocc_ros.config import load_config

    args.cameras = list(load_config(args.config).dataset.cameras)
    return args


def main(argv: list[str] | None = None) -> int:
    return finish("bench_node", run, parse_args(argv), summary_table, plot_any)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
