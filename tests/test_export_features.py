"""ONNX export of the fitted feature pipeline: each exportable step against ``Pipeline.transform``
under onnxruntime; the steps ONNX cannot express exactly are refused, named."""

import numpy as np
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import pytest
from onnx import TensorProto, helper  # noqa: E402

from xsharp.algos.features import Pipeline  # noqa: E402
from xsharp.export.features import export_steps, output_shape, raw_input_shape  # noqa: E402
from xsharp.export.graph import OPSET, ExportError, Graph  # noqa: E402

RATE = 16000


def fitted(spec, x, fit=None):
    pipeline = Pipeline.from_spec(spec, RATE)
    pipeline.fit(x if fit is None else fit)
    return pipeline


def run_onnx(pipeline, x):
    """Export ``pipeline`` for rows shaped like ``x``'s, check the model, run it in onnxruntime."""
    g = Graph()
    out = export_steps(g, pipeline, "x", x.shape[1:])
    graph = helper.make_graph(
        g.nodes,
        "features",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *x.shape[1:]])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", *output_shape(pipeline, x.shape[1:])])],
        g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = min(model.ir_version, 10)
    onnx.checker.check_model(model, full_check=True)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": np.ascontiguousarray(x, dtype=np.float32)})[0]


def check(spec, x, fit=None, atol=1e-5, rtol=0.0):
    x = np.asarray(x, dtype=np.float32)
    pipeline = fitted(spec, x, fit)
    want = pipeline.transform(x)
    got = run_onnx(pipeline, x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=atol, rtol=rtol)
    return got, want


def waves(n=3, seconds=0.5, seed=0):
    """Sines with a little noise, plain noise, a pure high tone, at 16 kHz."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(RATE * seconds)) / RATE
    rows = [
        np.sin(2 * np.pi * 440 * t) * 0.5 + 0.01 * rng.standard_normal(t.size),
        0.3 * rng.standard_normal(t.size),
        0.8 * np.sin(2 * np.pi * 3000 * t),
        np.sin(2 * np.pi * 200 * t) * np.linspace(0, 1, t.size),
    ]
    return np.stack(rows[:n] if n <= len(rows) else rows * (n // len(rows) + 1))[:n].astype(np.float32)


# --------------------------------------------------------------------------- linear steps: exact
@pytest.mark.parametrize("per", ["feature", "global"])
@pytest.mark.parametrize("row", [(7,), (5, 3)])
def test_standardize(per, row):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((40, *row)) * 3 + 2).astype(np.float32)
    check([{"standardize": {"per": per}}], x, atol=1e-6)


@pytest.mark.parametrize("strategy", ["mean", "median", "most_frequent", "constant"])
def test_impute_numeric_table(strategy):
    rng = np.random.default_rng(2)
    x = np.round(rng.standard_normal((30, 6)), 1).astype(np.float32)
    x[rng.random(x.shape) < 0.2] = np.nan
    x[:, 4] = np.nan  # a column with no value: the constant
    got, _ = check([{"impute": {"strategy": strategy, "value": -1.5}}, {"standardize": {}}], x, atol=1e-6)
    assert not np.isnan(got).any()


def test_impute_of_frames_keeps_the_row_shape():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((10, 4, 3)).astype(np.float32)
    x[rng.random(x.shape) < 0.3] = np.nan
    check([{"impute": {}}], x, atol=0)


@pytest.mark.parametrize("variance", [True, False])
def test_cmvn(variance):
    x = (np.random.default_rng(4).standard_normal((6, 20, 5)) * 4 + 1).astype(np.float32)
    check([{"cmvn": {"variance": variance}}], x, atol=1e-5)


@pytest.mark.parametrize("context,stride", [(0, 1), (2, 1), (3, 2), (2, 5), (4, 30)])
def test_stack_frames(context, stride):
    x = np.random.default_rng(5).standard_normal((3, 11, 4)).astype(np.float32)
    check([{"stack_frames": {"context": context, "stride": stride}}], x, atol=0)


def test_onehot_on_a_number_table_passes_it_through():
    x = np.random.default_rng(6).standard_normal((8, 3)).astype(np.float32)
    pipeline = fitted([{"onehot": {}}, {"standardize": {}}], x.astype(object))
    np.testing.assert_allclose(run_onnx(pipeline, x), pipeline.transform(x), atol=1e-6)


# --------------------------------------------------------------------------- audio
@pytest.mark.parametrize(
    "spec",
    [
        [{"logmel": {}}],
        [{"logmel": {"n_mels": 64, "n_fft": 256, "pre_emphasis": 0}}],  # n_fft shorter than the 400-sample frame: cropped
        [{"logmel": {"n_fft": 1024, "fmin": 100, "fmax": 6000, "hop_ms": 12.5}}],
        [{"mfcc": {}}],
        [{"mfcc": {"n_mfcc": 20, "n_mels": 26}}],
    ],
)
def test_log_mel_and_mfcc_match_numpy(spec):
    x = waves(4)
    got, want = check(spec, x, atol=1e-4, rtol=0)
    # measured: log-mel within 2e-6 of values up to 23 (1e-7 relative), MFCC within 2e-5 of values up to 120
    assert np.abs(got - want).max() <= 1e-6 * max(1.0, np.abs(want).max()) * 10


def test_a_waveform_shorter_than_a_frame_is_zero_padded():
    check([{"logmel": {}}], waves(2, seconds=0.015), atol=1e-4)  # 240 samples < 400


def test_speech_front_end_chain():
    # not the pure tone: its MFCCs hardly vary over time, so cmvn divides float32 rounding by a
    # near-zero deviation (numpy and the graph both right to float32, but apart by ~1e-2 there)
    x = waves(4, seconds=0.3)[[0, 1, 3]]
    # MFCCs agree to 1 ulp (~8e-6 at c0 ~ 120); cmvn then divides by each coefficient's deviation
    # over the frames, which can be ~0.05 for these steady signals: measured up to 1.5e-4 apart
    check([{"mfcc": {}}, {"cmvn": {}}, {"stack_frames": {"context": 2, "stride": 3}}], x, atol=5e-4)
    check([{"logmel": {}}, {"standardize": {"per": "global"}}, {"stack_frames": {"context": 1}}], waves(4, seconds=0.3), atol=1e-5)


# --------------------------------------------------------------------------- refused
TEXTS = np.array(["the cat sat", "the dog sat down", "a cat and a dog", "the end"], dtype=object)


@pytest.mark.parametrize(
    "i,spec",
    [
        (0, [{"bow": {"min_count": 1}}]),
        (0, [{"tfidf": {"min_count": 1}}]),
        (0, [{"word2vec": {"min_count": 1, "dim": 4, "epochs": 1}}]),
        (1, [{"tfidf": {"min_count": 1}}]),
    ],
)
def test_text_steps_are_refused_by_name(i, spec):
    pipeline = fitted(spec, TEXTS)
    if i == 1:  # after an exportable step: the refusal names the text step and its place
        pipeline.steps.insert(0, fitted([{"standardize": {"per": "global"}}], np.ones(4, np.float32)).steps[0])
    with pytest.raises(ExportError, match=rf"data\.features\[{i}\]\.(bow|tfidf|word2vec): .*cannot be written in ONNX exactly \(.*tokeni"):
        export_steps(Graph(), pipeline, "x", ())


def test_onehot_of_text_columns_is_refused():
    table = np.array([["red", 1.0], ["blue", 2.0], ["red", 3.0]], dtype=object)
    pipeline = fitted([{"onehot": {}}], table)
    with pytest.raises(ExportError, match=r"data\.features\[0\]\.onehot: .*cannot be written in ONNX exactly \(columns 0 hold text"):
        export_steps(Graph(), pipeline, "x", (2,))


def test_impute_of_a_table_with_text_is_refused():
    table = np.array([["red", 1.0], ["blue", np.nan], ["red", 3.0]], dtype=object)
    pipeline = fitted([{"impute": {}}, {"onehot": {}}], table)
    with pytest.raises(ExportError, match=r"data\.features\[0\]\.impute: .*cannot be written in ONNX exactly \(.*column 0 holds text"):
        export_steps(Graph(), pipeline, "x", (2,))


def test_cmvn_over_the_batch_axis_is_refused():
    pipeline = fitted([{"cmvn": {}}], np.ones((4, 3), np.float32))
    with pytest.raises(ExportError, match=r"data\.features\[0\]\.cmvn: .*cannot be written in ONNX exactly"):
        export_steps(Graph(), pipeline, "x", (3,))


# --------------------------------------------------------------------------- raw input shape
def test_raw_input_shape():
    x = np.random.default_rng(7).standard_normal((10, 5, 2)).astype(np.float32)
    assert raw_input_shape(fitted([{"standardize": {}}], x), (5, 2)) == (5, 2)
    assert raw_input_shape(fitted([{"impute": {}}, {"standardize": {"per": "feature"}}], x), (5, 2)) == (5, 2)
    assert raw_input_shape(fitted([{"cmvn": {}}, {"standardize": {"per": "global"}}], x), (5, 2)) == (5, 2)
    assert raw_input_shape(fitted([{"onehot": {}}], x[:, :, 0].astype(object)), (5,)) == (5,)
    assert raw_input_shape(fitted([{"stack_frames": {"context": 1}}], x), (5, 6)) is None
    assert raw_input_shape(fitted([{"logmel": {}}], waves(2)), (48, 40)) is None
    assert raw_input_shape(Pipeline([]), (3,)) == (3,)
