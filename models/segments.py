"""Segment geometry for segmented attention: pad, split into segments of s tokens, merge back.

A sequence of n tokens is padded with ``shift`` tokens on the left and as few as needed on the
right so that its length is a multiple of s, then cut into m segments of s tokens. Attention is
computed only inside a segment: cost O(n * s) and a score buffer of n * s, never n * n.

Padding rules (the contract every backend follows):
- padded positions are masked out as keys (they contribute exactly 0 to every softmax);
- padded query rows are computed (they are part of the segment tensor) and then dropped;
- with ``0 <= shift < s`` every segment holds at least one real token, so no row of real queries
  is fully masked unless the caller masks its keys with ``key_mask``.

A ``shift`` of s // 2 on alternate layers lets information cross segment borders (as shifted
windows do), while each layer still only attends within segments.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SegmentGeometry:
    """How n tokens map onto m segments of ``segment`` tokens after ``shift`` left padding."""

    n: int
    segment: int
    shift: int = 0

    def __post_init__(self) -> None:
        if self.segment <= 0:
            raise ValueError(f"segment length must be positive, got {self.segment}")
        if self.n <= 0:
            raise ValueError(f"sequence length must be positive, got {self.n}")
        if not 0 <= self.shift < self.segment:
            raise ValueError(f"shift must be in [0, segment={self.segment}), got {self.shift}")

    @property
    def pad_left(self) -> int:
        return self.shift

    @property
    def pad_right(self) -> int:
        return (-(self.shift + self.n)) % self.segment

    @property
    def padded(self) -> int:
        return self.shift + self.n + self.pad_right

    @property
    def num_segments(self) -> int:
        return self.padded // self.segment

    def valid(self, device: torch.device | None = None) -> torch.Tensor:
        """bool [m, s]: True where a segment slot holds a real token."""
        pos = torch.arange(self.padded, device=device)
        ok = (pos >= self.pad_left) & (pos < self.pad_left + self.n)
        return ok.view(self.num_segments, self.segment)


def to_segments(x: torch.Tensor, geo: SegmentGeometry) -> torch.Tensor:
    """[..., n, c] -> [..., m, s, c], zero padded (the pad value never matters: it is masked)."""
    if x.shape[-2] != geo.n:
        raise ValueError(f"expected {geo.n} tokens on axis -2, got shape {tuple(x.shape)}")
    if geo.pad_left or geo.pad_right:
        x = torch.nn.functional.pad(x, (0, 0, geo.pad_left, geo.pad_right))
    return x.reshape(*x.shape[:-2], geo.num_segments, geo.segment, x.shape[-1])


def from_segments(y: torch.Tensor, geo: SegmentGeometry) -> torch.Tensor:
    """[..., m, s, c] -> [..., n, c], dropping the padded query rows."""
    y = y.reshape(*y.shape[:-3], geo.padded, y.shape[-1])
    return y[..., geo.pad_left : geo.pad_left + geo.n, :]


def key_mask_segments(
    geo: SegmentGeometry, key_mask: torch.Tensor | None, device: torch.device | None = None
) -> torch.Tensor | None:
    """Key validity as bool [B|1, 1, m, 1, s] (broadcasts over heads and query rows).

    Returns None when nothing is masked (no padding, no caller mask): the fast path.
    ``key_mask``: optional bool [B, n], True = a real token (False keys are ignored).
    """
    if key_mask is None:
        if geo.pad_left == 0 and geo.pad_right == 0:
            return None
        return geo.valid(device).view(1, 1, geo.num_segments, 1, geo.segment)
    if key_mask.dtype != torch.bool or key_mask.dim() != 2 or key_mask.shape[1] != geo.n:
        raise ValueError(
            f"key_mask must be bool [batch, {geo.n}], got {key_mask.dtype} {tuple(key_mask.shape)}"
        )
    m = to_segments(key_mask.unsqueeze(-1).to(torch.uint8), geo).squeeze(-1).bool()  # pads -> False
    return m.view(key_mask.shape[0], 1, geo.num_segments, 1, geo.segment)
