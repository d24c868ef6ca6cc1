"""Quantization-aware training: float twin first, then QAT initialised from it.

A checkpoint holds both models (they are small), the config and the measured accuracies, so
`netfabric export` and the evaluation need nothing else. Checkpoints are written atomically.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from netfabric import logs  # progress bars reach the terminal while third-party output is logged
from netfabric.errors import CheckpointError
from netfabric.files import atomic_path

from .data import load_dataset
from .zoo import ModelConfig, build_model


@dataclass
class TrainConfig:
    dataset: str = "mnist"
    float_epochs: int = 8
    qat_epochs: int = 8
    batch_size: int = 128
    lr: float = 2e-3
    seed: int = 0
    augment: bool = True  # random shifts of up to 2 pixels
    threads: int | None = None
    limit: int | None = None  # train on the first N images only (smoke tests)


def load_checkpoint(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for corrupt files
        raise CheckpointError(f"checkpoint {path} is corrupt or not a torch file: {exc}") from exc
    if not isinstance(ckpt, dict) or "config" not in ckpt or "qat_state" not in ckpt:
        raise CheckpointError(f"{path} is not a netfabric checkpoint (no config / qat_state)")
    return ckpt


def model_from_checkpoint(ckpt: dict, quant: bool = True) -> nn.Module:
    cfg = ModelConfig.from_dict(ckpt["config"])
    cfg.quant = quant
    model = build_model(cfg)
    state = ckpt["qat_state"] if quant else ckpt["float_state"]
    model.load_state_dict(state)
    model.eval()
    return model


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 [N,H,W] -> float [N,1,H,W] holding the raw 0..255 pixel values."""
    return torch.from_numpy(images.astype(np.float32)).unsqueeze(1)


def _shift(x: torch.Tensor, gen: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Random translation by padding and cropping, per batch (cheap, helps small MLPs a lot)."""
    dx, dy = torch.randint(-max_shift, max_shift + 1, (2,), generator=gen).tolist()
    pad = nn.functional.pad(x, (max_shift,) * 4)
    h, w = x.shape[-2:]
    return pad[..., max_shift + dy : max_shift + dy + h, max_shift + dx : max_shift + dx + w]


@torch.no_grad()
def evaluate(model: nn.Module, images: np.ndarray, labels: np.ndarray, batch: int = 500) -> float:
    """Top-1 accuracy in percent."""
    model.eval()
    correct = 0
    for i in range(0, len(labels), batch):
        logits = model(_to_tensor(images[i : i + batch]))
        correct += int((logits.argmax(1).numpy() == labels[i : i + batch]).sum())
    return 100.0 * correct / len(labels)


def _fit(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, tc: TrainConfig, desc: str):
    gen = torch.Generator().manual_seed(tc.seed)
    opt = torch.optim.Adam(model.parameters(), lr=tc.lr)
    steps = epochs * ((len(y) + tc.batch_size - 1) // tc.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=tc.lr, total_steps=max(steps, 1))
    loss_fn = nn.CrossEntropyLoss()
    xt, yt = _to_tensor(x), torch.from_numpy(y)
    # disable=None: a live bar on a terminal, silence in CI logs
    with tqdm(total=steps, desc=desc, unit="batch", dynamic_ncols=True, disable=None,
              file=logs.stream(err=True)) as bar:
        for _ in range(epochs):
            model.train()
            perm = torch.randperm(len(yt), generator=gen)
            for i in range(0, len(yt), tc.batch_size):
                idx = perm[i : i + tc.batch_size]
                xb = _shift(xt[idx], gen) if tc.augment else xt[idx]
                loss = loss_fn(model(xb), yt[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")


def train(model_cfg: ModelConfig, tc: TrainConfig, out: Path) -> dict:
    """Train the float twin, then QAT from its weights; write and return the checkpoint."""
    model_cfg.validate()
    torch.manual_seed(tc.seed)
    np.random.seed(tc.seed)
    if tc.threads:
        torch.set_num_threads(tc.threads)
    x, y = load_dataset(tc.dataset, "train")
    xt, yt = load_dataset(tc.dataset, "test")
    if tc.limit:
        x, y = x[: tc.limit], y[: tc.limit]
    model_cfg.in_shape = (1, *x.shape[1:])
    t0 = time.time()

    fcfg = ModelConfig.from_dict(model_cfg.to_dict())
    fcfg.quant = False
    float_model = build_model(fcfg)
    _fit(float_model, x, y, tc.float_epochs, tc, "float twin")
    float_acc = evaluate(float_model, xt, yt)

    qcfg = ModelConfig.from_dict(model_cfg.to_dict())
    qcfg.quant = True
    qat_model = build_model(qcfg)
    # Brevitas layers keep the float parameter names, so the float weights seed QAT.
    qat_model.load_state_dict(float_model.state_dict(), strict=False)
    _fit(qat_model, x, y, tc.qat_epochs, tc, f"QAT w{qcfg.weight_bits}a{qcfg.act_bits}")
    qat_acc = evaluate(qat_model, xt, yt)

    ckpt = {
        "config": qcfg.to_dict(),
        "train": vars(tc),
        "float_state": float_model.state_dict(),
        "qat_state": qat_model.state_dict(),
        "metrics": {
            "dataset": tc.dataset,
            "float_acc": float_acc,
            "qat_acc": qat_acc,
            "train_seconds": round(time.time() - t0, 1),
        },
    }
    with atomic_path(out) as tmp:
        torch.save(ckpt, tmp)
    return ckpt
