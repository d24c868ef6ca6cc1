"""Segmented-attention transformer: shapes, segment padding/masking, QAT integer softmax,
the numpy integer forward, the trainer, and the shipped checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from netfabric.models import transformer as tr
from netfabric.models.data import load_dataset
from netfabric.models.int_softmax import int_softmax_ref
from netfabric.models.segments import SegmentGeometry
from netfabric.models.train_transformer import (
    CheckpointError,
    TransformerTrainConfig,
    load_transformer,
    train_transformer,
)
from netfabric.models.train_transformer import summary as train_summary
from netfabric.models.transformer import (
    SegmentedAttention,
    TransformerConfig,
    build_transformer,
    segmented_attention,
)
from netfabric.models.transformer_int import export_integer_params, integer_forward

PRETRAINED = Path(__file__).resolve().parents[1] / "models" / "pretrained" / "transformer_int8.pt"
SMALL = dict(image_size=8, patch=2, dim=16, heads=2, depth=2, segment=6)  # 16 tokens, 3 segments


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    torch.manual_seed(0)


def _qkv(b=2, h=3, n=23, dh=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, h, n, dh, generator=g, dtype=torch.float64) for _ in range(3)]


def _calibrated_qat(cfg: TransformerConfig) -> tr.SegmentTransformer:
    """A random QAT model whose activation scales have been initialised from statistics."""
    model = build_transformer(cfg)
    x = torch.randint(0, 256, (16, cfg.in_chans, cfg.image_size, cfg.image_size)).float()
    model.train()
    with torch.no_grad():
        for _ in range(tr.STATS_STEPS + 1):
            model(x)
    return model.eval()


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("quant", [False, True])
def test_model_shapes(quant: bool) -> None:
    model = build_transformer(TransformerConfig(**SMALL, quant=quant)).eval()
    assert model(torch.randint(0, 256, (3, 1, 8, 8)).float()).shape == (3, 10)
    assert model(torch.randint(0, 256, (2, 8, 8)).float()).shape == (2, 10)  # [B, H, W] too
    big = build_transformer(TransformerConfig(quant=quant)).eval()
    assert big(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert big.cfg.num_tokens == 49 and big.blocks[1].attn.shift == 7


@pytest.mark.parametrize("n", [1, 5, 6, 7, 23])
def test_attention_module_any_length(n: int) -> None:
    cfg = TransformerConfig(**SMALL, quant=False)
    for shift in (0, 3):
        att = SegmentedAttention(cfg, shift=shift)
        assert att(torch.randn(2, n, cfg.dim)).shape == (2, n, cfg.dim)


# --------------------------------------------------------------------------- segments


def test_segment_equal_to_length_is_full_attention() -> None:
    q, k, v = _qkv(n=20)
    full = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(segmented_attention(q, k, v, segment=20), full)
    # the explicit (masked) path gives the same
    mask = torch.ones(2, 20, dtype=torch.bool)
    torch.testing.assert_close(segmented_attention(q, k, v, 20, key_mask=mask), full)
    # and a segment longer than the sequence is full attention over the padded-then-masked keys
    torch.testing.assert_close(segmented_attention(q, k, v, segment=32), full)


@pytest.mark.parametrize("n,s,shift", [(23, 7, 0), (23, 7, 3), (21, 7, 0), (5, 7, 6), (14, 14, 7)])
def test_padded_segments_match_chunked_reference(n: int, s: int, shift: int) -> None:
    """Each (shifted) chunk attends only to itself; the short first/last chunks see no pads."""
    q, k, v = _qkv(n=n)
    got = segmented_attention(q, k, v, s, shift)
    bounds = [0] + list(range(s - shift, n, s)) + [n]
    bounds = sorted(set(b for b in bounds if 0 <= b <= n))
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        ref = torch.nn.functional.scaled_dot_product_attention(
            q[:, :, lo:hi], k[:, :, lo:hi], v[:, :, lo:hi]
        )
        torch.testing.assert_close(got[:, :, lo:hi], ref)
    all_true = torch.ones(q.shape[0], n, dtype=torch.bool)
    torch.testing.assert_close(segmented_attention(q, k, v, s, shift, all_true), got)


def test_valid_outputs_ignore_pad_values() -> None:
    """Masked (padded) tokens may hold anything: valid outputs do not change."""
    q, k, v = _qkv(n=23)
    key_mask = torch.ones(2, 23, dtype=torch.bool)
    key_mask[0, 17:] = False
    key_mask[1, 20:] = False
    ref = segmented_attention(q, k, v, 7, 3, key_mask)
    k2, v2 = k.clone(), v.clone()
    k2[~key_mask.view(2, 1, 23, 1).expand_as(k)] = 1e4
    v2[~key_mask.view(2, 1, 23, 1).expand_as(v)] = -1e4
    got = segmented_attention(q, k2, v2, 7, 3, key_mask)
    valid = key_mask.view(2, 1, 23, 1).expand_as(got)
    torch.testing.assert_close(got[valid], ref[valid])


@pytest.mark.parametrize("quant", [False, True])
def test_module_valid_outputs_ignore_masked_tokens(quant: bool) -> None:
    cfg = TransformerConfig(**SMALL, quant=quant)
    att = SegmentedAttention(cfg, shift=3)
    x = torch.randn(2, 11, cfg.dim)
    if quant:  # initialise the activation scales, then freeze them
        att.train()
        with torch.no_grad():
            for _ in range(tr.STATS_STEPS + 1):
                att(x)
    att.eval()
    key_mask = torch.ones(2, 11, dtype=torch.bool)
    key_mask[:, 8:] = False
    ref = att(x, key_mask)
    x2 = x.clone()
    x2[:, 8:] = torch.randn(2, 3, cfg.dim) * 5
    got = att(x2, key_mask)
    torch.testing.assert_close(got[:, :8], ref[:, :8], rtol=0, atol=0)


def test_fully_masked_segment_gives_zero_not_nan() -> None:
    q, k, v = _qkv(n=14)
    key_mask = torch.ones(2, 14, dtype=torch.bool)
    key_mask[:, :7] = False  # the whole first segment
    out = segmented_attention(q, k, v, 7, 0, key_mask)
    assert torch.isfinite(out).all() and (out[:, :, :7] == 0).all()


def test_bad_inputs() -> None:
    q, k, v = _qkv(n=10)
    with pytest.raises(ValueError, match="segment length must be positive"):
        segmented_attention(q, k, v, segment=0)
    with pytest.raises(ValueError, match="shift"):
        segmented_attention(q, k, v, segment=4, shift=4)
    with pytest.raises(ValueError, match="batch, heads, n, head_dim"):
        segmented_attention(q[0], k[0], v[0], segment=4)
    with pytest.raises(ValueError, match="key_mask"):
        segmented_attention(q, k, v, 4, key_mask=torch.ones(2, 9, dtype=torch.bool))
    with pytest.raises(ValueError, match="segment length must be positive"):
        TransformerConfig(segment=-1).validate()
    with pytest.raises(ValueError, match="multiple of heads"):
        TransformerConfig(dim=30, heads=4).validate()
    with pytest.raises(ValueError, match="unknown transformer config"):
        TransformerConfig.from_dict({"dimension": 3})
    model = build_transformer(TransformerConfig(**SMALL, quant=False))
    with pytest.raises(ValueError, match="expected images"):
        model(torch.zeros(2, 1, 9, 9))
    with pytest.raises(ValueError, match="tokens"):
        SegmentedAttention(model.cfg)(torch.zeros(2, 5, 7))
    with pytest.raises(ValueError, match="positive"):
        SegmentGeometry(0, 4)


# --------------------------------------------------------------------------- QAT numerics


def test_qat_forward_uses_integer_softmax(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _calibrated_qat(TransformerConfig(**SMALL))
    calls = []
    real = tr.int_softmax_ste
    monkeypatch.setattr(tr, "int_softmax_ste", lambda *a, **k: calls.append(1) or real(*a, **k))
    for att in model.attention_modules():
        att.record = True
    x = torch.randint(0, 256, (4, 1, 8, 8)).float()
    model(x)
    assert len(calls) == model.cfg.depth
    for att in model.attention_modules():
        rec = att.last
        params = model.cfg.softmax_params(float(rec["score_scale"]))
        mask = np.broadcast_to(rec["mask"].numpy(), rec["scores_int"].shape)
        ref = int_softmax_ref(rec["scores_int"].numpy(), mask, params)
        np.testing.assert_array_equal(rec["probs_int"].numpy(), ref)
        assert rec["scores_int"].abs().max() <= 128 and rec["probs_int"].max() <= 255


def test_float_weights_seed_qat() -> None:
    fm = build_transformer(TransformerConfig(**SMALL, quant=False))
    qm = build_transformer(TransformerConfig(**SMALL, quant=True))
    missing, unexpected = qm.load_state_dict(fm.state_dict(), strict=False)
    assert not unexpected
    assert all("quant" in k for k in missing)  # only quantizer state is new


def test_integer_forward_matches_qat_model() -> None:
    model = _calibrated_qat(TransformerConfig(**SMALL))
    params = export_integer_params(model)
    images = np.random.default_rng(0).integers(0, 256, size=(64, 8, 8), dtype=np.uint8)
    trace: dict = {}
    acc = integer_forward(params, images, trace)
    with torch.no_grad():
        logits = model(torch.from_numpy(images.astype(np.float32))).numpy()
        feats = model.features(torch.from_numpy(images.astype(np.float32))).numpy()
    assert acc.dtype == np.int64 and acc.shape == (64, 10)
    final_int = np.round(feats / params["final_quant"]["s"]).astype(np.int64)
    # eval mode evaluates integer_forward's float64 requantizer inputs: the integers are equal
    assert np.array_equal(final_int, trace["final"])
    scale = params["head"]["s_w"] * params["final_quant"]["s"] / model.cfg.num_tokens
    assert np.array_equal(acc * scale, logits)
    # training mode runs Brevitas' float32 layers: same model, float32 rounding (close, not equal)
    model.train()
    for m in model.modules():  # keep BatchNorm on its running statistics
        if isinstance(m, torch.nn.BatchNorm1d):
            m.eval()
    with torch.no_grad():
        f32 = model.features(torch.from_numpy(images.astype(np.float32))).numpy()
    model.eval()
    assert f32.dtype == np.float32 and np.abs(f32 - feats).max() < 0.1 * np.abs(feats).max()
    with pytest.raises(ValueError, match="uint8"):
        integer_forward(params, images.astype(np.int32))
    with pytest.raises(ValueError, match="QAT"):
        export_integer_params(build_transformer(TransformerConfig(**SMALL, quant=False)))


# --------------------------------------------------------------------------- training


def test_train_smoke_on_digits(tmp_path: Path) -> None:
    tc = TransformerTrainConfig(dataset="digits", float_epochs=1, qat_epochs=1, batch_size=256)
    out = tmp_path / "t.pt"
    ckpt = train_transformer(TransformerConfig(**SMALL), tc, out, command="pytest")
    assert out.is_file() and ckpt["stage"] == "done"
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["seed"] == 0 and summary["command"] == "pytest"
    # the stored accuracies are those of the saved weights on the digits test split
    xt, yt = load_dataset("digits", "test")
    for key, quant in (("int8_acc", True), ("float_acc", False)):
        acc = tr.evaluate(load_transformer(out, quant=quant), xt, yt)
        assert ckpt["metrics"][key] == pytest.approx(acc), key
        assert summary[key] == round(acc, 3), key
    model = load_transformer(out)
    assert model.cfg.quant and model(torch.zeros(1, 1, 8, 8)).shape == (1, 10)
    assert not load_transformer(out, quant=False).cfg.quant
    assert not list(tmp_path.glob(".*tmp"))  # atomic writes leave no temp files
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_transformer(tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_transformer(tmp_path / "missing.pt")


# --------------------------------------------------------------------------- shipped model


def test_shipped_checkpoint_is_small_and_documented() -> None:
    """The JSON beside the checkpoint describes that checkpoint (its numbers are recomputed by
    the accuracy tests below)."""
    assert PRETRAINED.is_file(), "models/pretrained/transformer_int8.pt is missing"
    assert PRETRAINED.stat().st_size < 2_000_000
    meta = json.loads(PRETRAINED.with_suffix(".json").read_text())
    assert {"seed", "float_epochs", "qat_epochs", "command"} <= set(meta)
    ckpt = torch.load(PRETRAINED, map_location="cpu", weights_only=False)
    assert meta == train_summary(ckpt)
    assert meta["dataset"] == "mnist" and meta["config"]["quant"]
    assert load_transformer(PRETRAINED).cfg.to_dict() == meta["config"]


def test_shipped_checkpoint_accuracy_on_1000_test_images() -> None:
    from netfabric.models.data import load_mnist

    images, labels = load_mnist("test")
    images, labels = images[:1000], labels[:1000]
    model = load_transformer(PRETRAINED)
    acc = tr.evaluate(model, images, labels)
    assert acc >= 97.5, acc
    # QAT costs at most one point against the float twin it was trained from
    float_acc = tr.evaluate(load_transformer(PRETRAINED, quant=False), images, labels)
    assert abs(float_acc - acc) <= 1.0, (float_acc, acc)
    # the numpy integer forward gives the QAT model's predictions (tests/test_integer_contract.py
    # holds every integer to the HW graph)
    pred = integer_forward(export_integer_params(model), images[:200]).argmax(1)
    qat_pred = tr.predict_logits(model, images[:200]).argmax(1)
    assert np.array_equal(pred, qat_pred)


@pytest.mark.slow
def test_shipped_checkpoint_metrics_reproduce_on_full_test_set() -> None:
    """The accuracies in transformer_int8.json (and the README) are those of the shipped
    weights on the whole MNIST test set."""
    from netfabric.models.data import load_mnist

    images, labels = load_mnist("test")
    meta = json.loads(PRETRAINED.with_suffix(".json").read_text())
    for key, quant in (("int8_acc", True), ("float_acc", False)):
        acc = tr.evaluate(load_transformer(PRETRAINED, quant=quant), images, labels)
        assert round(acc, 3) == meta[key], (key, acc)
    assert meta["int8_acc"] >= 97.5
