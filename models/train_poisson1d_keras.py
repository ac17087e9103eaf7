"""Train the 1-D Poisson PINN in TensorFlow/Keras 3 and export ``models/poisson1d_keras.onnx`` (tf2onnx).

Problem: ``-u'' = pi^2 sin(pi x)`` on ``[-1, 1]``, ``u(-1) = u(1) = 0``; exact ``u = sin(pi x)``
(``onnx2snn.exact.poisson1d``).  Network: ``keras.Sequential`` of ``Dense`` layers,
``1 -> 3 x 50 tanh -> 1``, which tf2onnx writes as ``MatMul`` + ``Add`` (+ ``Tanh``).
Loss: mean squared PDE residual (``u''`` by nested ``tf.GradientTape``) scaled by ``1/pi^4``, plus the
squared boundary values.  Adam (Keras optimizer) on fresh random points every step, then L-BFGS
(``scipy.optimize.minimize(method="L-BFGS-B")`` on the flattened weights, loss and gradient from a
``tf.function``) on a fixed Chebyshev-Gauss-Lobatto grid.  Seeded, float64, one thread; the export is
float32.

Optional extra, not run in CI: TensorFlow and tf2onnx live in their own virtualenv, outside the
project's Python (they pin their own numpy/protobuf builds)::

    python -m venv /work/venvs/tf
    /work/venvs/tf/bin/pip install tensorflow tf2onnx onnx onnxruntime scipy
    OMP_NUM_THREADS=1 /work/venvs/tf/bin/python models/train_poisson1d_keras.py

(``pip install ".[fixtures-tf]"`` installs the same set.)  Trained with tensorflow 2.21.0, keras 3.15.1,
tf2onnx 1.17.0, onnx 1.23.2, onnxruntime 1.31.1, scipy 1.17.1.

Export: ``tf2onnx.convert.from_function`` on a ``tf.function`` with
``input_signature=[TensorSpec([None, 1], float32, name="x")]`` returning ``{"u": model(x)}``
(``from_keras`` does not work with Keras 3), opset 17; then ``ir_version`` capped at 10, the metadata
``onnx2snn.domain = "x=-1:1"`` and ``onnx2snn.problem = "poisson1d"`` added and
``onnx.checker.check_model(full_check=True)`` run.  The saved file is checked against the float32
Keras model with onnxruntime, and its error against the exact solution is measured there.  The
script exits non-zero when that error exceeds 1e-3.  It imports no torch and no onnx2snn package
code (only ``onnx2snn/exact.py``, loaded by path).
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)

import keras  # noqa: E402
import onnx  # noqa: E402
import scipy  # noqa: E402
import scipy.optimize  # noqa: E402
import tf2onnx  # noqa: E402

from script_common import Log, load_exact, rel_l2  # noqa: E402

HERE = Path(__file__).resolve().parent
OUT = HERE / "poisson1d_keras.onnx"
SEED = 0
WIDTH, DEPTH = 50, 3
N_COLLOC = 512
ADAM_STEPS, ADAM_LR, ADAM_MILESTONES = 3000, 1e-3, (1500, 2500)
LBFGS_ITERS = 3000
OPSET, IR_VERSION = 17, 10
DOMAIN, PROBLEM = "x=-1:1", "poisson1d"
TARGET = 1e-3


def build_model(dtype: str) -> keras.Sequential:
    """``1 -> DEPTH x WIDTH tanh -> 1``; Glorot-uniform kernels, zero biases (Keras defaults)."""
    layers = [keras.Input((1,), dtype=dtype, name="x")]
    layers += [keras.layers.Dense(WIDTH, activation="tanh", dtype=dtype, name=f"hidden{i + 1}") for i in range(DEPTH)]
    layers.append(keras.layers.Dense(1, dtype=dtype, name="output"))
    return keras.Sequential(layers, name="poisson1d_keras")


def make_loss(model: keras.Model):
    xb = tf.constant([[-1.0], [1.0]], tf.float64)
    pi = tf.constant(math.pi, tf.float64)

    def loss_fn(x: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as outer:
            outer.watch(x)
            with tf.GradientTape() as inner:
                inner.watch(x)
                u = model(x)
            u_x = inner.gradient(u, x)  # each row depends on its own x only: d(sum u)/dx = u'(x)
        u_xx = outer.gradient(u_x, x)
        res = (u_xx + pi**2 * tf.sin(pi * x)) / pi**2
        return tf.reduce_mean(res**2) + tf.reduce_mean(model(xb) ** 2)

    return loss_fn


def train(model: keras.Model, log: Log, u_eval_fn, adam_steps: int = ADAM_STEPS,
          lbfgs_iters: int = LBFGS_ITERS) -> dict:
    loss_fn = make_loss(model)
    variables = model.trainable_variables
    rng = np.random.default_rng(SEED)

    schedule = keras.optimizers.schedules.PiecewiseConstantDecay(
        list(ADAM_MILESTONES), [ADAM_LR, ADAM_LR * 0.3, ADAM_LR * 0.09]
    )
    opt = keras.optimizers.Adam(learning_rate=schedule)

    @tf.function(reduce_retracing=True)
    def adam_step(x):
        with tf.GradientTape() as tape:
            loss = loss_fn(x)
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    for step in range(1, adam_steps + 1):
        x = tf.constant(rng.uniform(-1.0, 1.0, (N_COLLOC, 1)))
        loss = adam_step(x)
        if step % 500 == 0 or step == adam_steps:
            log(f"adam {step:6d}  loss {float(loss):.3e}  rel_l2 {u_eval_fn():.2e}")
    adam_s = log.elapsed()

    # L-BFGS on a fixed Chebyshev-Gauss-Lobatto grid (denser near the boundaries)
    k = np.arange(2 * N_COLLOC)
    x_fixed = tf.constant(-np.cos(np.pi * k / (2 * N_COLLOC - 1))[:, None])
    shapes = [tuple(v.shape) for v in variables]
    sizes = [int(np.prod(s)) for s in shapes]

    @tf.function
    def value_and_grad(flat):
        for v, part, shape in zip(variables, tf.split(flat, sizes), shapes):
            v.assign(tf.reshape(part, shape))
        with tf.GradientTape() as tape:
            loss = loss_fn(x_fixed)
        grads = tape.gradient(loss, variables)
        return loss, tf.concat([tf.reshape(g, [-1]) for g in grads], 0)

    calls = {"n": 0, "best": (math.inf, None)}

    def fun(w):
        loss, g = value_and_grad(tf.constant(w))
        loss = float(loss)
        calls["n"] += 1
        if math.isfinite(loss) and loss < calls["best"][0]:
            calls["best"] = (loss, w.copy())
        return loss, g.numpy()

    iters = {"n": 0}

    def callback(intermediate_result):
        iters["n"] += 1
        if iters["n"] % 500 == 0:
            log(f"lbfgs {iters['n']:6d}  loss {intermediate_result.fun:.3e}  rel_l2 {u_eval_fn():.2e}")

    w0 = np.concatenate([v.numpy().ravel() for v in variables])
    res = scipy.optimize.minimize(
        fun, w0, jac=True, method="L-BFGS-B", callback=callback,
        options={"maxiter": lbfgs_iters, "maxfun": int(lbfgs_iters * 1.25), "maxcor": 50,
                 "ftol": 1e-16, "gtol": 1e-12},
    )
    best_loss, best_w = calls["best"]
    value_and_grad(tf.constant(best_w))  # keep the parameters with the lowest loss seen
    log(f"lbfgs done: {res.nit} iterations, {calls['n']} evaluations, loss {best_loss:.3e} ({res.message})")
    return {"adam_s": adam_s, "train_s": log.elapsed(), "final_loss": best_loss, "lbfgs_iters": res.nit}


def export(model32: keras.Model, path: Path) -> onnx.ModelProto:
    spec = tf.TensorSpec([None, 1], tf.float32, name="x")

    @tf.function(input_signature=[spec])
    def fn(x):
        return {"u": model32(x)}

    proto, _ = tf2onnx.convert.from_function(fn, input_signature=fn.input_signature, opset=OPSET)
    proto.ir_version = min(proto.ir_version, IR_VERSION)
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, {"onnx2snn.domain": DOMAIN, "onnx2snn.problem": PROBLEM})
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))
    return proto


def onnx_predict(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return sess.run(["u"], {"x": np.asarray(x, np.float32)})[0].astype(np.float64)


def describe(proto: onnx.ModelProto) -> str:
    ops = [n.op_type for n in proto.graph.node]
    meta = {p.key: p.value for p in proto.metadata_props}
    opset = {o.domain or "ai.onnx": o.version for o in proto.opset_import}
    return f"ops {ops}, opset {opset}, ir_version {proto.ir_version}, metadata {meta}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--adam", type=int, default=ADAM_STEPS, help=f"Adam steps (default {ADAM_STEPS})")
    ap.add_argument("--lbfgs", type=int, default=LBFGS_ITERS, help=f"L-BFGS iterations (default {LBFGS_ITERS})")
    ap.add_argument("-o", "--output", type=Path, default=OUT, help=f"default {OUT}")
    args = ap.parse_args()

    log = Log()
    keras.utils.set_random_seed(SEED)
    exact = load_exact()
    model = build_model("float64")
    n_params = model.count_params()
    log(
        f"poisson1d (Keras): 1 -> {DEPTH}x{WIDTH} tanh -> 1, {n_params} parameters, tensorflow {tf.__version__}, "
        f"keras {keras.__version__}, tf2onnx {tf2onnx.__version__}, scipy {scipy.__version__}"
    )
    x_eval = np.linspace(-1.0, 1.0, 2048)[:, None]
    u_eval = exact.poisson1d(x_eval)

    def err_keras() -> float:
        return rel_l2(model(tf.constant(x_eval)).numpy(), u_eval)

    hist = train(model, log, err_keras, args.adam, args.lbfgs)
    err64 = err_keras()

    model32 = build_model("float32")
    model32.set_weights([w.astype(np.float32) for w in model.get_weights()])
    proto = export(model32, args.output)
    log(f"exported {args.output}: {describe(proto)}")

    u_onnx = onnx_predict(args.output, x_eval)
    u_k32 = model32(tf.constant(x_eval, tf.float32)).numpy()
    diff = float(np.abs(u_onnx - u_k32).max())
    if diff > 1e-5:
        raise SystemExit(f"{args.output}: onnxruntime differs from the float32 Keras model by {diff:.2e}")
    err_onnx = rel_l2(u_onnx, u_eval)
    print(f"parameters            {n_params}")
    print(f"final loss            {hist['final_loss']:.3e}  (L-BFGS iterations {hist['lbfgs_iters']})")
    print(f"onnxruntime vs float32 Keras: max |difference| {diff:.1e}")
    print(f"rel L2 vs exact, Keras float64, 2048 uniform points: {err64:.3e}")
    print(f"rel L2 vs exact, ONNX float32,  2048 uniform points: {err_onnx:.3e}")
    print(f"Adam {hist['adam_s']:.1f} s, training time {hist['train_s']:.1f} s, total wall time {log.elapsed():.1f} s")
    if err_onnx > TARGET:
        raise SystemExit(f"poisson1d (Keras): relative L2 {err_onnx:.2e} exceeds the target {TARGET:g}")


if __name__ == "__main__":
    main()
