"""Brevitas QAT models: a TFC-style MLP and a CNV-style CNN, plus their float twins.

Both are written so that the FINN front end streamlines them into pure integer hardware layers:
- the input is the raw pixel (0..255); the first op divides by 255, which streamlining folds into
  the first layer's thresholds, so the accelerator receives uint8 pixels;
- every hidden layer is Linear/Conv (no bias) -> BatchNorm -> QuantReLU, which FINN turns into an
  MVAU with fused thresholds;
- the classifier is a bias-free QuantLinear with a per-tensor weight scale, so its float output is
  a positive scalar times the integer accumulator: argmax (and LabelSelect) is unchanged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

SUPPORTED_BITS = (2, 3, 4, 5, 6, 7, 8)


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model; stored in every checkpoint."""

    arch: str = "mlp"  # mlp | cnn
    weight_bits: int = 8
    act_bits: int = 8
    quant: bool = True  # False: the float twin
    in_shape: tuple[int, int, int] = (1, 28, 28)
    num_classes: int = 10
    hidden: list[int] = field(default_factory=lambda: [64, 64, 64])
    conv_channels: list[int] = field(default_factory=lambda: [16, 32, 32, 64])
    fc_hidden: int = 128

    def to_dict(self) -> dict:
        d = asdict(self)
        d["in_shape"] = list(self.in_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        d = dict(d)
        d["in_shape"] = tuple(d.get("in_shape", (1, 28, 28)))
        return cls(**d)

    def validate(self) -> None:
        if self.arch not in ("mlp", "cnn"):
            raise ValueError(f"unknown architecture {self.arch!r}; use mlp or cnn")
        for name in ("weight_bits", "act_bits"):
            bits = getattr(self, name)
            if bits not in SUPPORTED_BITS:
                raise ValueError(
                    f"{name}={bits} is not supported: use {SUPPORTED_BITS[0]}..{SUPPORTED_BITS[-1]}"
                )


class _Layers:
    """Factory for quantized or float layers with the same structure."""

    def __init__(self, cfg: ModelConfig):
        self.cfg = cfg

    def linear(self, fin: int, fout: int) -> nn.Module:
        if not self.cfg.quant:
            return nn.Linear(fin, fout, bias=False)
        from brevitas.nn import QuantLinear

        return QuantLinear(fin, fout, bias=False, weight_bit_width=self.cfg.weight_bits)

    def conv(self, cin: int, cout: int) -> nn.Module:
        if not self.cfg.quant:
            return nn.Conv2d(cin, cout, 3, bias=False)
        from brevitas.nn import QuantConv2d

        return QuantConv2d(cin, cout, 3, bias=False, weight_bit_width=self.cfg.weight_bits)

    def act(self) -> nn.Module:
        if not self.cfg.quant:
            return nn.ReLU()
        from brevitas.nn import QuantReLU

        return QuantReLU(bit_width=self.cfg.act_bits, return_quant_tensor=False)


class PixelScale(nn.Module):
    """Maps raw pixels 0..255 to 0..1; FINN folds this into the first thresholds."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (1.0 / 255.0)


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        f = _Layers(cfg)
        layers: list[nn.Module] = [PixelScale(), nn.Flatten()]
        width = int(torch.tensor(cfg.in_shape).prod())
        for h in cfg.hidden:
            layers += [f.linear(width, h), nn.BatchNorm1d(h), f.act()]
            width = h
        layers.append(f.linear(width, cfg.num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CNN(nn.Module):
    """conv-conv-pool-conv-conv-pool-fc-fc, valid 3x3 convolutions (CNV-style)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        f = _Layers(cfg)
        c_in, h, _ = cfg.in_shape
        layers: list[nn.Module] = [PixelScale()]
        for i, c in enumerate(cfg.conv_channels):
            layers += [f.conv(c_in, c), nn.BatchNorm2d(c), f.act()]
            c_in, h = c, h - 2
            if i % 2 == 1:
                layers.append(nn.MaxPool2d(2))
                h //= 2
        layers += [nn.Flatten(), f.linear(c_in * h * h, cfg.fc_hidden)]
        layers += [nn.BatchNorm1d(cfg.fc_hidden), f.act(), f.linear(cfg.fc_hidden, cfg.num_classes)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build_model(cfg: ModelConfig) -> nn.Module:
    cfg.validate()
    return {"mlp": MLP, "cnn": CNN}[cfg.arch](cfg)
