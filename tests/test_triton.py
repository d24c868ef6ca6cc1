"""The triton backend: every op's kernel in its corner cases, whole graphs identical to the CPU
engine, the kernels benchmarks call, and the reasons it gives when it cannot run.

Without a GPU the kernels run on CPU tensors under Triton's interpreter: conftest.py sets
TRITON_INTERPRET=1 at session start, before triton defines them (slow: a few frames each;
more frames are slow-marked). The random single-op samples of every op are in
test_op_conformance.py (``test_triton_equals_semantics``).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from netfabric import flow
from netfabric.errors import BackendUnavailable, GraphError
from netfabric.ops import registry

pytest.importorskip("triton")
import torch  # noqa: E402 -- after the skip: the backend needs both
import triton_cases as cases  # noqa: E402 -- tests/ is on the path, as for test_stitch

from netfabric.host.cpu_engine import CpuEngine  # noqa: E402
from netfabric.host.triton_backend import TritonBackend, triton_availability  # noqa: E402

if triton_availability():
    pytest.skip(f"triton backend unavailable: {triton_availability()}", allow_module_level=True)


def test_every_registered_op_has_a_triton_piece():
    missing = [name for name, op in registry.ops().items() if not op.has("triton")]
    assert not missing, f"no triton piece: {missing}"
    assert len(registry.ops()) >= 13


@pytest.mark.parametrize("name", sorted(cases.MVAU_CASES))
def test_mvau_modes(tmp_path, name):
    """XNOR popcount, bipolar agreement counts, signed/unsigned 8-bit operands (zero point,
    weight limbs), wide inputs (pooled sums in limbs, int64), unsorted threshold rows,
    several K and N tiles, with and without the fused thresholds."""
    path, x, want = cases.mvau_case(tmp_path, name)
    assert np.unique(want).size > 1, "the case must exercise more than one output level"
    got = TritonBackend(path).run(x)
    assert np.array_equal(got.reshape(want.shape), want)


@pytest.mark.parametrize("name", sorted(cases.ATTENTION_CASES))
def test_segment_attention_geometries(tmp_path, name):
    """Segment lengths 3..70 (one key tile, and 70 keys over two tiles: the three-pass path),
    1..4 heads, head dims 1..16, shifted segments with masked padding."""
    path, x, want = cases.attention_case(tmp_path, name)
    got = TritonBackend(path).run(x)
    assert np.array_equal(got.reshape(want.shape), want)


def test_mvau_int8_kernel():
    from netfabric.host.triton_ops import mvau_int8
    from netfabric.ops.kernels import threshold_count

    rng = np.random.default_rng(3)
    x = rng.integers(-128, 128, size=(37, 200))
    w = rng.integers(-128, 128, size=(200, 24))
    thr = rng.integers(-60000, 60000, size=(24, 15))  # unsorted: a count is order-free
    xt, wt = torch.tensor(x, dtype=torch.int8), torch.tensor(w, dtype=torch.int8)
    acc = mvau_int8(xt, wt)
    assert acc.dtype == torch.int32 and np.array_equal(acc.numpy(), x @ w)
    got = mvau_int8(xt, wt, torch.tensor(thr), act_val=-7, block=(16, 16, 32))
    assert np.array_equal(got.numpy(), threshold_count(x @ w, thr, -7))
    with pytest.raises(GraphError, match="int8"):
        mvau_int8(xt.to(torch.int32), wt)


@pytest.mark.parametrize("tables", ["shared", "per_row"])
def test_segment_attention_kernel(tables):
    """The standalone fused kernel on [B, H, n, dh] int8 tensors (n not a multiple of the
    segment: the last segment's missing keys are masked) against ops/kernels.py, with one
    shared threshold row or one per key (scores) and per head channel (context)."""
    from netfabric.host.triton_kernels.attention import default_params
    from netfabric.host.triton_ops import segment_attention
    from netfabric.ops import kernels

    rng = np.random.default_rng(4)
    b, h, n, dh, seg = 2, 2, 23, 8, 6
    q, k, v = (rng.integers(-128, 128, size=(b, h, n, dh)) for _ in range(3))
    p = default_params(dh)
    if tables == "per_row":
        p["score_thr"] = np.sort(rng.integers(-6000, 6000, size=(seg, 255)), axis=1)
        p["ctx_thr"] = np.sort(rng.integers(-30000, 30000, size=(dh, 255)), axis=1)
    got = segment_attention(*(torch.tensor(t, dtype=torch.int8) for t in (q, k, v)), seg, p)
    pack = [t.transpose(0, 2, 1, 3).reshape(b, n, h * dh) for t in (q, k, v)]
    segs = kernels.segment_pad(np.concatenate(pack, -1), seg, 0)
    softmax = {"recip_bits": p["recip_bits"], "out_frac_bits": p["frac_bits"],
               "out_bits": p["out_bits"], "score_min": p["score_min"]}
    ctx = kernels.segment_attention(segs, h, kernels.segment_valid(n, seg, 0), p["score_thr"],
                                    p["score_act"], p["lut"], p["ctx_thr"], p["ctx_act"],
                                    softmax)
    want = kernels.segment_unpad(ctx, n, 0).reshape(b, n, h, dh).transpose(0, 2, 1, 3)
    assert np.unique(want).size > 10
    assert np.array_equal(got.numpy(), want)


# ------------------------------------------------------------------------- whole graphs


@pytest.fixture(scope="module")
def cnn_graph(tmp_path_factory, compile_helper):
    folder = tmp_path_factory.mktemp("triton_cnn")
    qonnx = flow.export_checkpoint(flow.PRETRAINED / "cnn_w8a8.pt", folder / "cnn.onnx")
    return compile_helper(qonnx, folder / "hw", label_select=False)


@pytest.fixture(scope="module")
def tf_graph(tmp_path_factory):
    from netfabric.hls.transformer import compile_transformer_cli

    torch.set_num_threads(1)
    return compile_transformer_cli(flow.PRETRAINED / "transformer_int8.pt",
                                   tmp_path_factory.mktemp("triton_transformer"))


def _same_as_cpu(graph, images: np.ndarray) -> None:
    got, want = TritonBackend(graph).run(images), CpuEngine(graph).run(images)
    assert got.shape == want.shape and got.dtype == np.int64
    assert np.array_equal(got, want)


def test_mlp_labels_equal_cpu_engine(mlp_graph, mnist_test):
    _same_as_cpu(mlp_graph, mnist_test[0][:8, None])


def test_cnn_logits_equal_cpu_engine(cnn_graph, mnist_test):
    _same_as_cpu(cnn_graph, mnist_test[0][:2, None])


def test_transformer_logits_equal_cpu_engine(tf_graph, mnist_test):
    _same_as_cpu(tf_graph, mnist_test[0][:1, None])  # interpreted attention: ~5 s an image


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mlp", "cnn", "transformer"])
def test_models_equal_cpu_engine_on_more_images(request, model, mnist_test):
    fixture = {"mlp": "mlp_graph", "cnn": "cnn_graph", "transformer": "tf_graph"}[model]
    count = 16 if model == "transformer" else 64  # interpreted attention: ~5 s an image
    _same_as_cpu(request.getfixturevalue(fixture), mnist_test[0][100:100 + count, None])


# ------------------------------------------------------------------------- errors


def test_bad_input_and_graph_give_one_line_errors(mlp_graph, tmp_path):
    backend = TritonBackend(mlp_graph)
    assert backend.run(np.zeros((0, 1, 28, 28), np.uint8)).shape == (0, 1)  # an empty batch
    with pytest.raises(ValueError, match="does not match"):
        backend.run(np.zeros((2, 3, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="UINT8"):
        backend.run(np.full((1, 1, 28, 28), 300))
    with pytest.raises(GraphError, match="does not exist"):
        TritonBackend(tmp_path / "missing.onnx")


def test_cuda_device_without_a_gpu_is_unavailable(mlp_graph):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(BackendUnavailable, match="no CUDA GPU"):
        TritonBackend(mlp_graph, device="cuda")


PROBE = """
import sys
{block}
from netfabric.errors import BackendUnavailable
from netfabric.host.triton_backend import TritonBackend, triton_availability
from netfabric.ops import registry
print("reason:", triton_availability())
print("column:", any(op.has("triton") for op in registry.ops().values()))
try:
    TritonBackend(sys.argv[1])
except BackendUnavailable as exc:
    print("error:", exc)
"""


def _probe(graph, block: str = "") -> str:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["CUDA_VISIBLE_DEVICES"] = ""  # no GPU, even on a machine that has one
    result = subprocess.run([sys.executable, "-c", PROBE.format(block=block), str(graph)],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_unavailable_without_gpu_or_interpreter(mlp_graph):
    out = _probe(mlp_graph)
    reason = "no CUDA GPU found and TRITON_INTERPRET is not set"
    assert f"reason: {reason}" in out and f"error: {reason}" in out
    assert "column: True" in out


def test_unavailable_without_triton(mlp_graph):
    out = _probe(mlp_graph, block="sys.modules['triton'] = None  # as if not installed")
    reason = "triton is not installed: pip install 'netfabric[gpu]'"
    assert f"reason: {reason}" in out and f"error: {reason}" in out
    assert "column: False" in out  # the registry's triton column is empty then
