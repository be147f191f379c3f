"""CUDA checks (skipped without a GPU): the same weights give the same outputs on CPU and CUDA; AMP trains."""
from __future__ import annotations

import pytest
import torch
from model_helpers import make_inputs, make_targets

from protoocc_ros.model import build_model

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA-only check")


@cuda
def test_cuda_forward_matches_cpu(tiny_cfg) -> None:
    torch.manual_seed(0)
    model = build_model(tiny_cfg).eval()
    inp = make_inputs(tiny_cfg)
    cpu = model(**inp)
    gpu_model = build_model(tiny_cfg).cuda().eval()
    gpu_model.load_state_dict(model.state_dict())
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.backends.cudnn.flags(enabled=True, deterministic=True, allow_tf32=False):
            gpu = gpu_model(**{k: v.cuda() for k, v in inp.items()})
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.testing.assert_close(gpu.logits.cpu(), cpu.logits, rtol=1e-3, atol=1e-3)
    second = gpu_model(**{k: v.cuda() for k, v in dict(inp, timestamp=inp["timestamp"] + 0.5).items()},
                       memory=gpu.memory)
    assert second.memory.reset_reason == [None]


@cuda
def test_cuda_training_step_with_amp(tiny_cfg) -> None:
    torch.manual_seed(0)
    model = build_model(tiny_cfg).cuda().train()
    inp = {k: v.cuda() for k, v in make_inputs(tiny_cfg).items()}
    targets = {k: v.cuda() for k, v in make_targets(tiny_cfg).items()}
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = model(**inp)
        loss, terms = model.loss(out, targets)
    loss.backward()
    assert torch.isfinite(loss) and "cls" in terms
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
