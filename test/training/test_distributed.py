"""DDP: two CPU processes on gloo give the gradients of one process averaging the same two clips."""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from protoocc_ros.training.clips import ClipSampler
from protoocc_ros.training.distributed import init_distributed, process_seed, shutdown_distributed
from protoocc_ros.training.trainer import Trainer

from training_helpers import SequenceDataset, tiny_config

WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _frames(trainer: Trainer, batch: list[list[int]]) -> list[list[dict]]:
    return [[trainer.samples.sample(clip[t]) for clip in batch] for t in range(len(batch[0]))]


def _worker(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    ctx = init_distributed("cpu")
    try:
        cfg = tiny_config()
        dataset = SequenceDataset(cfg)
        trainer = Trainer(cfg, dataset=dataset, output_dir=out_dir, ctx=ctx, progress=False, tensorboard=False)
        assert isinstance(trainer.model, torch.nn.parallel.DistributedDataParallel)
        batch = trainer.sampler.batches(0)[0]
        trainer.accumulate_gradients(_frames(trainer, batch))
        grads = {n: p.grad.contiguous() for n, p in trainer.module.named_parameters() if p.grad is not None}
        save_file(grads, os.path.join(out_dir, f"rank{rank}.safetensors"))
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(batch))
    finally:
        shutdown_distributed()


def test_two_process_ddp_matches_single_process_gradients(tmp_path: Path) -> None:
    mp.start_processes(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True, start_method="spawn")
    ddp = [load_file(str(tmp_path / f"rank{r}.safetensors")) for r in range(WORLD)]
    batches = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD)]
    assert batches[0] != batches[1]  # the ranks saw different clips

    cfg = tiny_config()
    dataset = SequenceDataset(cfg)
    sampler = ClipSampler(dataset.frame_keys(), cfg.train.clip_length, cfg.train.batch_size, cfg.train.seed,
                          world_size=1)
    assert sorted(map(str, batches)) == sorted(map(str, sampler.all_batches(0)[:WORLD]))
    single = Trainer(cfg, dataset=dataset, output_dir=tmp_path / "single", progress=False, tensorboard=False)
    per_rank: list[dict[str, torch.Tensor]] = []
    for rank, batch in enumerate(batches):
        torch.manual_seed(process_seed(cfg.train.seed, rank))  # the dropout stream that rank used
        single.accumulate_gradients(_frames(single, batch))
        per_rank.append({n: p.grad.clone() for n, p in single.module.named_parameters() if p.grad is not None})
    mean = {n: sum(g[n] for g in per_rank) / WORLD for n in per_rank[0]}
    assert set(mean) == set(ddp[0]) == set(ddp[1]) and len(mean) > 20
    for name, expected in mean.items():
        torch.testing.assert_close(ddp[0][name], ddp[1][name], rtol=0, atol=0)
        torch.testing.assert_close(ddp[0][name], expected, rtol=1e-4, atol=1e-6, msg=name)
    # the reduction really mixed the two clips: a rank's own gradient is not the result
    assert any(not torch.allclose(per_rank[0][n], ddp[0][n], rtol=1e-3, atol=1e-5) for n in mean)
