"""Train the segmented-attention transformer: float twin first, then QAT initialised from it.

    python -m netfabric.models.train_transformer --out models/pretrained/transformer_int8.pt

The checkpoint holds the config, both state dicts and the measured accuracies; it is rewritten
atomically (:mod:`netfabric.files`) after every epoch, so an interrupted run leaves the last
complete epoch. A JSON summary (accuracies, seed, epochs, command) is written beside it.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from netfabric import logs  # progress bars reach the terminal while third-party output is logged
from netfabric.errors import CheckpointError
from netfabric.files import atomic_path, atomic_write

from .data import load_dataset
from .train import _shift
from .transformer import SegmentTransformer, TransformerConfig, build_transformer, evaluate

CHECKPOINT_KIND = "netfabric.transformer"


@dataclass
class TransformerTrainConfig:
    dataset: str = "mnist"
    float_epochs: int = 4
    qat_epochs: int = 1
    batch_size: int = 128
    lr: float = 3e-3
    qat_lr: float = 5e-4
    weight_decay: float = 0.02
    augment: bool = True  # random shifts of up to 2 pixels, one per batch
    seed: int = 0
    threads: int | None = 1  # the machine is shared: one thread unless asked otherwise
    limit: int | None = None  # train on the first N images only (smoke tests)

    def validate(self) -> None:
        if self.float_epochs < 0 or self.qat_epochs < 0:
            raise ValueError("epoch counts must be >= 0")
        if self.batch_size <= 0 or self.lr <= 0 or self.qat_lr <= 0:
            raise ValueError("batch_size and learning rates must be positive")


def fit(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    epochs: int,
    lr: float,
    tc: TransformerTrainConfig,
    desc: str,
    on_epoch: Callable[[int], None] | None = None,
) -> None:
    """AdamW with one-cycle schedule; ``on_epoch(epoch)`` runs after every epoch (checkpoints)."""
    if epochs == 0:
        return
    gen = torch.Generator().manual_seed(tc.seed)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "pos" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "pos" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": tc.weight_decay}, {"params": rest, "weight_decay": 0.0}],
        lr=lr,
    )
    per_epoch = (len(labels) + tc.batch_size - 1) // tc.batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=epochs * per_epoch, pct_start=0.15
    )
    x_all = torch.from_numpy(images.astype(np.float32)).unsqueeze(1)  # raw pixels 0..255
    y_all = torch.from_numpy(labels)
    loss_fn = nn.CrossEntropyLoss()
    with tqdm(total=epochs * per_epoch, desc=desc, unit="batch", dynamic_ncols=True,
              file=logs.stream(err=True)) as bar:
        for epoch in range(epochs):
            model.train()
            perm = torch.randperm(len(y_all), generator=gen)
            for i in range(0, len(y_all), tc.batch_size):
                idx = perm[i : i + tc.batch_size]
                xb = _shift(x_all[idx], gen) if tc.augment else x_all[idx]
                loss = loss_fn(model(xb), y_all[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
            if on_epoch is not None:
                on_epoch(epoch)


def _checkpoint(
    cfg: TransformerConfig,
    tc: TransformerTrainConfig,
    float_model: nn.Module | None,
    qat_model: nn.Module | None,
    metrics: dict,
    stage: str,
) -> dict:
    return {
        "kind": CHECKPOINT_KIND,
        "config": cfg.to_dict(),
        "train": asdict(tc),
        "stage": stage,
        "float_state": None if float_model is None else float_model.state_dict(),
        "qat_state": None if qat_model is None else qat_model.state_dict(),
        "metrics": dict(metrics),
    }


def train_transformer(
    model_cfg: TransformerConfig | None = None,
    tc: TransformerTrainConfig | None = None,
    out: Path | None = None,
    command: str | None = None,
) -> dict:
    """Train the float twin, then QAT from its weights; write the checkpoint (and JSON) to ``out``.

    Returns the checkpoint dict; ``metrics`` has ``float_acc``, ``int8_acc`` (percent, full test
    split) and ``train_seconds``.
    """
    model_cfg = (
        TransformerConfig.from_dict(model_cfg.to_dict()) if model_cfg else TransformerConfig()
    )
    tc = tc or TransformerTrainConfig()
    model_cfg.validate()
    tc.validate()
    if tc.threads:
        torch.set_num_threads(tc.threads)
    torch.manual_seed(tc.seed)
    np.random.seed(tc.seed)
    x, y = load_dataset(tc.dataset, "train")
    xt, yt = load_dataset(tc.dataset, "test")
    if x.shape[1] != model_cfg.image_size:
        raise ValueError(
            f"data set images are {x.shape[1:]}, config expects {model_cfg.image_size}"
        )
    if tc.limit:
        x, y = x[: tc.limit], y[: tc.limit]
    out = Path(out) if out else None
    metrics: dict = {"dataset": tc.dataset, "seed": tc.seed}
    t0 = time.time()

    fcfg = TransformerConfig.from_dict({**model_cfg.to_dict(), "quant": False})
    float_model = build_transformer(fcfg)
    save = _saver(out, model_cfg, tc, metrics)
    fit(
        float_model,
        x,
        y,
        tc.float_epochs,
        tc.lr,
        tc,
        "float twin",
        on_epoch=lambda e: save(float_model, None, f"float epoch {e + 1}"),
    )
    metrics["float_acc"] = evaluate(float_model, xt, yt)

    qcfg = TransformerConfig.from_dict({**model_cfg.to_dict(), "quant": True})
    qat_model = build_transformer(qcfg)
    missing, unexpected = qat_model.load_state_dict(float_model.state_dict(), strict=False)
    if unexpected:
        raise RuntimeError(f"float twin has parameters the QAT model lacks: {unexpected}")
    fit(
        qat_model,
        x,
        y,
        tc.qat_epochs,
        tc.qat_lr,
        tc,
        "QAT int8",
        on_epoch=lambda e: save(float_model, qat_model, f"qat epoch {e + 1}"),
    )
    metrics["int8_acc"] = evaluate(qat_model, xt, yt)
    metrics["train_seconds"] = round(time.time() - t0, 1)
    metrics["command"] = command or shlex.join(sys.argv)
    ckpt = _checkpoint(qcfg, tc, float_model, qat_model, metrics, "done")
    if out:
        _save(ckpt, out)
        atomic_write(out.with_suffix(".json"), json.dumps(summary(ckpt), indent=2) + "\n")
    return ckpt


def _saver(
    out: Path | None, cfg: TransformerConfig, tc: TransformerTrainConfig, metrics: dict
) -> Callable[[nn.Module, nn.Module | None, str], None]:
    def save(float_model: nn.Module, qat_model: nn.Module | None, stage: str) -> None:
        if out is not None:
            _save(_checkpoint(cfg, tc, float_model, qat_model, metrics, stage), out)

    return save


def summary(ckpt: dict) -> dict:
    """The JSON written beside the checkpoint."""
    m, tc = ckpt["metrics"], ckpt["train"]
    return {
        "model": "transformer",
        "float_acc": _round(m.get("float_acc")),
        "int8_acc": _round(m.get("int8_acc")),
        "dataset": m.get("dataset"),
        "seed": tc["seed"],
        "float_epochs": tc["float_epochs"],
        "qat_epochs": tc["qat_epochs"],
        "train_seconds": m.get("train_seconds"),
        "threads": tc["threads"],
        "command": m.get("command"),
        "config": ckpt["config"],
    }


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def _save(ckpt: dict, out: Path) -> None:
    """Write the checkpoint whole or not at all: a run interrupted mid-save keeps the last one."""
    with atomic_path(out) as tmp:
        torch.save(ckpt, tmp)


def load_transformer(path: Path, quant: bool = True) -> SegmentTransformer:
    """Rebuild the QAT model (or its float twin) from a checkpoint, in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for corrupt files
        raise CheckpointError(f"{path} is corrupt or not a torch file: {exc}") from exc
    if not isinstance(ckpt, dict) or ckpt.get("kind") != CHECKPOINT_KIND:
        raise CheckpointError(f"{path} is not a netfabric transformer checkpoint")
    state = ckpt.get("qat_state" if quant else "float_state")
    if state is None:
        raise CheckpointError(f"{path} has no {'QAT' if quant else 'float'} weights yet")
    model = build_transformer({**ckpt["config"], "quant": quant})
    model.load_state_dict(state)
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    d = TransformerTrainConfig()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("models/pretrained/transformer_int8.pt"))
    ap.add_argument("--float-epochs", type=int, default=d.float_epochs)
    ap.add_argument("--qat-epochs", type=int, default=d.qat_epochs)
    ap.add_argument("--batch-size", type=int, default=d.batch_size)
    ap.add_argument("--lr", type=float, default=d.lr)
    ap.add_argument("--qat-lr", type=float, default=d.qat_lr)
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--threads", type=int, default=d.threads)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--no-augment", action="store_true")
    for name in ("dim", "depth", "heads", "segment", "patch", "mlp_ratio"):
        ap.add_argument(f"--{name.replace('_', '-')}", type=int, default=None)
    a = ap.parse_args(argv)
    cfg = TransformerConfig(
        **{
            k: getattr(a, k)
            for k in ("dim", "depth", "heads", "segment", "patch", "mlp_ratio")
            if getattr(a, k) is not None
        }
    )
    tc = TransformerTrainConfig(
        float_epochs=a.float_epochs,
        qat_epochs=a.qat_epochs,
        batch_size=a.batch_size,
        lr=a.lr,
        qat_lr=a.qat_lr,
        seed=a.seed,
        threads=a.threads,
        limit=a.limit,
        augment=not a.no_augment,
    )
    argv = sys.argv[1:] if argv is None else argv
    command = shlex.join(["python", "-m", "netfabric.models.train_transformer", *argv])
    ckpt = train_transformer(cfg, tc, a.out, command=command)
    print(json.dumps(summary(ckpt), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
