import numpy as np
import pytest
import torch

from netfabric.models.train import (
    CheckpointError,
    TrainConfig,
    evaluate,
    load_checkpoint,
    model_from_checkpoint,
    train,
)
from netfabric.models.zoo import ModelConfig, build_model


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
@pytest.mark.parametrize("quant", [True, False])
def test_forward_shapes(arch, quant):
    model = build_model(ModelConfig(arch=arch, quant=quant)).eval()
    assert model(torch.rand(3, 1, 28, 28) * 255).shape == (3, 10)


@pytest.mark.parametrize("field,value", [("weight_bits", 9), ("act_bits", 1), ("arch", "rnn")])
def test_bad_config_is_rejected(field, value):
    with pytest.raises(ValueError, match=field if field != "arch" else "architecture"):
        build_model(ModelConfig(**{field: value}))


def test_training_writes_an_atomic_checkpoint_that_learns(tmp_path):
    out = tmp_path / "digits.pt"
    ckpt = train(
        ModelConfig(arch="mlp", hidden=[32, 32], weight_bits=4, act_bits=4),
        TrainConfig(
            dataset="digits",
            float_epochs=15,
            qat_epochs=10,
            seed=1,
            threads=1,
            lr=1e-2,
            augment=False,
        ),
        out,
    )
    assert [p.name for p in tmp_path.iterdir()] == ["digits.pt"]  # no temp file left behind
    assert ckpt["metrics"]["qat_acc"] > 80.0  # 10 classes: chance is 10%
    again = load_checkpoint(out)
    from netfabric.models.data import load_digits

    x, y = load_digits("test")
    assert evaluate(model_from_checkpoint(again), x, y) == pytest.approx(ckpt["metrics"]["qat_acc"])


def test_corrupt_checkpoint_is_reported(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a netfabric checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_shipped_mlp_meets_the_accuracy_bars(mnist_test):
    """INT8 MLP >= 98.0% on the MNIST test set, within 0.5 points of its float twin."""
    from netfabric import flow

    x, y = mnist_test
    ckpt = load_checkpoint(flow.DEFAULT_CHECKPOINT)
    qat = evaluate(model_from_checkpoint(ckpt, quant=True), x, y)
    flt = evaluate(model_from_checkpoint(ckpt, quant=False), x, y)
    assert qat >= 98.0
    assert abs(flt - qat) <= 0.5
    assert ckpt["config"]["weight_bits"] == 8 and ckpt["config"]["act_bits"] == 8
    assert np.isclose(qat, ckpt["metrics"]["qat_acc"])
