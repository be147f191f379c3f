"""ProtoOcc training loop on sequential clips (paper Sec. 4.1, Eq. 6): AdamW, schedule, AMP, clipping, DDP, resume.

One optimizer step = one batch of B clips of T consecutive frames. The frames of a clip run in order;
the temporal memory returned by frame t is detached and fed to frame t+1 and starts empty at every
clip (clips never cross scene boundaries, see clips.py). Each frame's Eq. 6 loss is back-propagated
at once (divided by T, so the step sees the clip mean) and the graph is freed; under DDP the
gradients are reduced once per clip (``no_sync`` on the first T-1 frames).
"""
from __future__ import annotations

import contextlib
import json
import math
import random
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from protoocc_ros.checkpoints.errors import CheckpointError
from protoocc_ros.checkpoints.format import (
    ModelFactory,
    architecture_differences,
    check_checkpoint_path,
    load_training_state,
    load_weights_into,
    read_metadata,
    save_checkpoint,
    stored_config,
)
from protoocc_ros.config import ProtoOccConfig
from protoocc_ros.training.batching import collate_frame
from protoocc_ros.training.clips import Batch, ClipSampler, frame_keys
from protoocc_ros.training.distributed import DistContext, mean_over_ranks, pick_device, process_seed, wrap_model
from protoocc_ros.training.errors import TrainingError
from protoocc_ros.training.loader import (
    TrainingSamples,
    needs_pseudo_masks,
    pseudo_mask_store,
    single_threaded_cv2_before_fork,
    worker_init,
)
from protoocc_ros.training.schedule import LrFactor, build_optimizer, build_scheduler

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

    from protoocc_ros.model import ProtoOcc

CHECKPOINT_DIR = "checkpoints"
TRAIN_LOG = "train_log.jsonl"  # one JSON line per logged step: loss terms and prototype health figures
HISTORY_LIMIT = 10_000  # per-step loss terms kept in memory (the tail of the run; tensorboard has all)
SYNTHETIC_INFO = "synthetic.json"  # written by the synthetic sample generator next to its nuScenes tables


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def checkpoint_name(step: int) -> str:
    return f"step_{step:07d}.safetensors"


def latest_checkpoint(path: str | Path) -> Path:
    """A checkpoint file as given, or the highest-step checkpoint of a run directory (or its checkpoints/)."""
    p = Path(path)
    if p.is_dir():
        folder = p / CHECKPOINT_DIR if (p / CHECKPOINT_DIR).is_dir() else p
        found = sorted(f for f in folder.glob("step_*.safetensors") if not f.name.endswith(".state.safetensors"))
        if not found:
            raise CheckpointError(f"{folder}: no step_*.safetensors checkpoint to resume from")
        return found[-1]
    return check_checkpoint_path(p)


class _ClipBatches(Dataset):
    """Loads the samples of a list of batches, frame-major: item k = [frame_0 samples (B), ..., frame_T-1].

    The batches are kept as flat int64 arrays (indices, (B, T) shapes, offsets), not as nested lists: no
    per-index Python objects for the forked workers to copy on read.
    """

    def __init__(self, samples: TrainingSamples, batches: list[Batch], epoch: int) -> None:
        self.samples, self.epoch = samples, epoch
        self.shapes = np.array([(len(b), len(b[0])) for b in batches], dtype=np.int64).reshape(-1, 2)
        self.offsets = np.concatenate([[0], np.cumsum(self.shapes.prod(1))]).astype(np.int64)
        self.indices = np.array([i for b in batches for clip in b for i in clip], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.shapes)

    def __getitem__(self, k: int) -> list[list[dict[str, Any]]]:
        b, t = (int(v) for v in self.shapes[k])
        batch = self.indices[self.offsets[k]:self.offsets[k + 1]].reshape(b, t)
        return [[self.samples.sample(int(i), self.epoch) for i in batch[:, f]] for f in range(t)]


def _identity(x: Any) -> Any:
    return x


def _default_model(cfg: ProtoOccConfig) -> ProtoOcc:
    from protoocc_ros.model import build_model

    return build_model(cfg)


def _default_dataset(cfg: ProtoOccConfig, split: str) -> Any:
    from protoocc_ros.data import build_dataset

    return build_dataset(cfg, split)


class Trainer:
    """Builds model, data, optimizer and schedule from a config and runs/resumes training.

    ``dataset`` (default ``build_dataset(cfg, "train")``) must provide ``len``, ``__getitem__`` -> sample
    dict (docs/architecture.md) and ``scenes()`` + ``scene_indices(scene)`` (see clips.frame_keys).
    """

    def __init__(self, cfg: ProtoOccConfig, *, dataset: Any | None = None, output_dir: str | Path | None = None,
                 device: str | None = None, ctx: DistContext | None = None, command: str | None = None,
                 progress: bool = True, tensorboard: bool = True, model_factory: ModelFactory | None = None) -> None:
        self.cfg = cfg
        self.ctx = ctx if ctx is not None else DistContext(device=pick_device(device))
        self.device = self.ctx.device
        self.output_dir = Path(output_dir if output_dir is not None else cfg.train.output_dir)
        self.command = command
        self.progress = progress and self.ctx.is_main
        t = cfg.train
        seed_everything(t.seed)  # same initial weights on every rank
        self.module = (model_factory or _default_model)(cfg).to(self.device)
        self.init_checkpoint = self._load_initial_weights(t.load_from) if t.load_from else None
        torch.manual_seed(process_seed(t.seed, self.ctx.rank))
        self.model = wrap_model(self.module, self.ctx)
        self.dataset = dataset if dataset is not None else _default_dataset(cfg, "train")
        self.sampler = ClipSampler(frame_keys(self.dataset), t.clip_length, t.batch_size, t.seed,
                                   self.ctx.rank, self.ctx.world_size)
        self.steps_per_epoch = len(self.sampler)
        self.total_steps = t.max_steps if t.max_steps is not None else t.epochs * self.steps_per_epoch
        self.optimizer = build_optimizer(self.module, t)
        self.scheduler = build_scheduler(self.optimizer, t, self.total_steps)
        self.use_amp = bool(t.amp and self.device.type == "cuda")
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.mask_store = pseudo_mask_store(cfg, self.output_dir)
        self.samples = TrainingSamples(self.dataset, cfg, self.mask_store)  # what the loader workers build
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0  # batches of `epoch` already done
        self.history: list[dict[str, float]] = []  # the last HISTORY_LIMIT..2*HISTORY_LIMIT steps
        self.reset_reasons: list[list[str | None]] = []  # per frame of the last clip batch: why memory started empty
        self._writer: SummaryWriter | None = None
        self._tensorboard = tensorboard and self.ctx.is_main

    # ---------------------------------------------------------------------------------------
    def _frame_context(self, last_frame: bool) -> contextlib.AbstractContextManager:
        if self.ctx.enabled and not last_frame:
            return self.model.no_sync()  # type: ignore[operator]
        return contextlib.nullcontext()

    def accumulate_gradients(self, frames: list[list[dict[str, Any]]]) -> dict[str, float]:
        """Forward/backward one batch of clips (frame-major lists of ``self.samples`` items); returns the mean
        loss terms."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        memory = None
        totals: dict[str, float] = {}
        num_frames = len(frames)
        self.reset_reasons = []
        for t, samples in enumerate(frames):
            inputs, targets = collate_frame(samples, self.device, needs_pseudo_masks(self.cfg))
            with self._frame_context(t == num_frames - 1):
                with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.use_amp):
                    out = self.model(**inputs, memory=memory)
                loss, terms = self.module.loss(out, targets)
                if not math.isfinite(terms["total"]):
                    raise TrainingError(f"step {self.step}, frame {t}: loss is {terms['total']} ({terms}); "
                                        "lower train.lr or enable train.grad_clip")
                self.scaler.scale(loss / num_frames).backward()
            memory = out.memory.detach()  # carried to the next frame of the clip, no gradient through time
            self.reset_reasons.append(list(memory.reset_reason))
            for k, v in terms.items():
                totals[k] = totals.get(k, 0.0) + v / num_frames
        return totals

    def optimizer_step(self) -> float:
        """Unscale, clip, step optimizer and schedule; returns the gradient norm before clipping."""
        self.scaler.unscale_(self.optimizer)
        params = [p for p in self.module.parameters() if p.grad is not None]
        max_norm = self.cfg.train.grad_clip if self.cfg.train.grad_clip is not None else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm)) if params else 0.0
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return grad_norm

    def train_step(self, frames: list[list[dict[str, Any]]]) -> dict[str, float]:
        """One optimizer step; on logged steps (``train.log_every``) also the prototype health figures
        (model/prototype_health.py) of its frames, as ``health/<figure>`` terms."""
        from protoocc_ros.model.prototype_health import recording

        lr = self.optimizer.param_groups[-1]["lr"]
        logged = (self.step + 1) % self.cfg.train.log_every == 0 or self.step + 1 == self.total_steps
        with recording(self.module) if logged else contextlib.nullcontext() as rec:
            terms = self.accumulate_gradients(frames)
        grad_norm = self.optimizer_step()
        self.step += 1
        health = {} if rec is None else {f"health/{k}": v for k, v in rec.summary().items()}
        return {**terms, **health, "grad_norm": grad_norm, "lr": lr}

    def epoch_loader(self, epoch: int, skip: int = 0) -> DataLoader:
        batches = self.sampler.batches(epoch)[skip:]
        t = self.cfg.train
        workers = t.num_workers
        if workers > 0:
            single_threaded_cv2_before_fork()
        # An own generator: creating a loader must not draw from the global RNG (exact resume).
        return DataLoader(_ClipBatches(self.samples, batches, epoch), batch_size=None, shuffle=False,
                          num_workers=workers, collate_fn=_identity, persistent_workers=False,
                          pin_memory=self.device.type == "cuda",
                          generator=torch.Generator().manual_seed(t.seed + epoch),
                          prefetch_factor=t.prefetch_factor if workers > 0 else None,
                          worker_init_fn=worker_init if workers > 0 else None)

    # ---------------------------------------------------------------------------------------
    def save(self, path: str | Path | None = None, metric: dict[str, Any] | None = None) -> Path:
        path = Path(path) if path is not None else self.output_dir / CHECKPOINT_DIR / checkpoint_name(self.step)
        return save_checkpoint(path, self.module, self.cfg, step=self.step, epoch=self.epoch,
                               optimizer=self.optimizer, scheduler=self.scheduler,
                               scaler=self.scaler if self.use_amp else None, metric=metric,
                               command=self.command, data_seed=self.data_seed,
                               extra={"batch_in_epoch": self.batch_in_epoch, "total_steps": self.total_steps,
                                      "world_size": self.ctx.world_size, "train_seed": self.cfg.train.seed})

    @property
    def data_seed(self) -> int:
        """Seed of the data: the synthetic sample's generator seed (``synthetic.json`` of its dataroot, or a
        ``seed`` attribute of the dataset), else ``train.seed`` (which orders the clips)."""
        seed = getattr(self.dataset, "seed", None)
        if isinstance(seed, int):
            return seed
        root = getattr(self.dataset, "dataroot", None)
        for info in ([] if root is None else [Path(root) / SYNTHETIC_INFO, Path(root).parent / SYNTHETIC_INFO]):
            if info.is_file():
                stored = json.loads(info.read_text()).get("config", {}).get("seed")
                if isinstance(stored, int):
                    return stored
        return self.cfg.train.seed

    def _same_architecture(self, path: str | Path, action: str) -> Path:
        """The checkpoint of ``path`` (file or run directory); CheckpointError when its architecture differs."""
        ckpt = latest_checkpoint(path)
        diffs = architecture_differences(stored_config(read_metadata(ckpt), ckpt), self.cfg)
        if diffs:
            raise CheckpointError(f"{ckpt}: cannot {action} with a different architecture: " + "; ".join(diffs))
        return ckpt

    def _load_initial_weights(self, path: str | Path) -> Path:
        """``train.load_from``: the weights of a checkpoint, nothing of its training state (fine-tuning)."""
        ckpt = self._same_architecture(path, "fine-tune (train.load_from)")
        load_weights_into(self.module, ckpt)
        return ckpt

    def resume(self, path: str | Path) -> Path:
        """Restore weights, optimizer, schedule, scaler, RNG and the position in the data from a checkpoint."""
        ckpt = self._same_architecture(path, "resume")
        meta = load_training_state(ckpt, self.module, self.optimizer, self.scheduler,
                                   self.scaler if self.use_amp else None)
        for factor in self.scheduler.lr_lambdas:  # a longer/shorter run may continue a checkpoint
            if isinstance(factor, LrFactor):
                factor.total_steps = self.total_steps
        self.step, self.epoch = int(meta["step"]), int(meta["epoch"])
        self.batch_in_epoch = int(meta.get("extra", {}).get("batch_in_epoch", 0))
        if self.ctx.rank != 0:  # the stored RNG is rank 0's
            torch.manual_seed(process_seed(self.cfg.train.seed, self.ctx.rank) + self.step)
        return ckpt

    def _log(self, terms: dict[str, float]) -> None:
        """Tensorboard scalars and a line of ``train_log.jsonl`` (main rank; NaN written as null)."""
        if not self.ctx.is_main:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        line = {"step": self.step, **{k: (v if math.isfinite(v) else None) for k, v in terms.items()}}
        with open(self.output_dir / TRAIN_LOG, "a") as f:
            f.write(json.dumps(line) + "\n")
        if not self._tensorboard:
            return
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.output_dir / "tensorboard"))
        for k, v in terms.items():
            self._writer.add_scalar(f"train/{k}", v, self.step)

    def fit(self) -> dict[str, Any]:
        """Train until ``total_steps``; checkpoints every ``train.checkpoint_every`` steps and at the end."""
        t = self.cfg.train
        start_time, start_step = time.monotonic(), self.step
        last: dict[str, float] = {}
        bar = tqdm(total=self.total_steps, initial=self.step, desc="train", disable=not self.progress,
                   dynamic_ncols=True)
        checkpoint = None
        try:
            while self.step < self.total_steps:
                for frames in self.epoch_loader(self.epoch, self.batch_in_epoch):
                    terms = self.train_step(frames)
                    self.batch_in_epoch += 1
                    if self.batch_in_epoch == self.steps_per_epoch:
                        self.epoch, self.batch_in_epoch = self.epoch + 1, 0
                    last = mean_over_ranks(terms, self.ctx)
                    self.history.append(last)
                    if len(self.history) > 2 * HISTORY_LIMIT:
                        del self.history[:-HISTORY_LIMIT]
                    bar.update(1)
                    bar.set_postfix({k: f"{v:.3g}" for k, v in last.items() if k not in ("lr",) and "/" not in k},
                                    refresh=False)
                    if self.step % t.log_every == 0 or self.step == self.total_steps:
                        self._log({**last, "step_time_s": (time.monotonic() - start_time)
                                   / max(1, self.step - start_step)})
                    last = {k: v for k, v in last.items() if not k.startswith("health/")}
                    if self.ctx.is_main and (self.step % t.checkpoint_every == 0 or self.step == self.total_steps):
                        checkpoint = self.save()
                    if self.step >= self.total_steps:
                        break
        finally:
            bar.close()
            if self._writer is not None:
                self._writer.flush()
        return {"step": self.step, "epoch": self.epoch, "checkpoint": checkpoint, "terms": last,
                "seconds": time.monotonic() - start_time}
