"""Train the 1-D Poisson PINN in JAX (Flax NNX) and export ``models/poisson1d_jax.onnx`` (jax2onnx).

Problem: ``-u'' = pi^2 sin(pi x)`` on ``[-1, 1]``, ``u(-1) = u(1) = 0``; exact ``u = sin(pi x)``
(``onnx2snn.exact.poisson1d``).  Network: Flax NNX ``nnx.Linear`` layers, ``1 -> 3 x 50 tanh -> 1``
(the architecture of ``train_poisson1d_keras.py``), which jax2onnx writes as ``Gemm`` (``transB=0``,
kernel ``[in, out]``) + ``Tanh``.  Loss: mean squared PDE residual (``u''`` by forward-over-forward
``jax.jvp``) scaled by ``1/pi^4``, plus the squared boundary values.  ``optax.adam`` on fresh random
points every step, then ``optax.lbfgs`` (zoom line search) on a fixed Chebyshev-Gauss-Lobatto grid.
Seeded, float64 (``jax_enable_x64``), one thread; the export is float32.

Optional extra, not run in CI: JAX, Flax and jax2onnx live in their own virtualenv, outside the
project's Python::

    python -m venv /work/venvs/jax
    /work/venvs/jax/bin/pip install jax jaxlib flax optax jax2onnx onnx onnxruntime scipy
    OMP_NUM_THREADS=1 XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" \\
        /work/venvs/jax/bin/python models/train_poisson1d_jax.py

(``pip install ".[fixtures-jax]"`` installs the same set; the script also sets both variables itself.)
Trained with jax/jaxlib 0.10.2, flax 0.12.8, optax 0.2.8, jax2onnx 0.17.1, onnx 1.23.2,
onnxruntime 1.31.1.

Export: ``jax2onnx.to_onnx(model, [ShapeDtypeStruct(("B", 1), float32)], opset=21,
input_names=["x"], output_names=["u"])``; then ``ir_version`` capped at 10, the metadata
``onnx2snn.domain = "x=-1:1"`` and ``onnx2snn.problem = "poisson1d"`` added and
``onnx.checker.check_model(full_check=True)`` run.  The saved file is checked against the float32
Flax model with onnxruntime, and its error against the exact solution is measured there.  The script
exits non-zero when that error exceeds 1e-3.  It imports no torch and no onnx2snn package code (only
``onnx2snn/exact.py``, loaded by path).
"""

from __future__ import annotations

import argparse
import math
import os
from importlib.metadata import version
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402
import jax2onnx  # noqa: E402

from script_common import Log, load_exact, rel_l2  # noqa: E402

HERE = Path(__file__).resolve().parent
OUT = HERE / "poisson1d_jax.onnx"
SEED = 0
WIDTH, DEPTH = 50, 3
N_COLLOC = 512
ADAM_STEPS, ADAM_LR = 3000, 1e-3
LBFGS_ITERS = 3000
OPSET, IR_VERSION = 21, 10
DOMAIN, PROBLEM = "x=-1:1", "poisson1d"
TARGET = 1e-3


class MLP(nnx.Module):
    """``in_dim -> depth x width tanh -> 1`` of ``nnx.Linear`` (Glorot-uniform kernels, zero biases)."""

    def __init__(self, in_dim: int, width: int, depth: int, *, dtype, rngs: nnx.Rngs) -> None:
        dims = [in_dim] + [width] * depth + [1]
        self.layers = nnx.List([
            nnx.Linear(a, b, kernel_init=nnx.initializers.glorot_uniform(), bias_init=nnx.initializers.zeros,
                       dtype=dtype, param_dtype=dtype, rngs=rngs)
            for a, b in zip(dims[:-1], dims[1:])
        ])

    def __call__(self, x):
        for layer in self.layers[:-1]:
            x = jnp.tanh(layer(x))
        return self.layers[-1](x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--adam", type=int, default=ADAM_STEPS, help=f"Adam steps (default {ADAM_STEPS})")
    ap.add_argument("--lbfgs", type=int, default=LBFGS_ITERS, help=f"L-BFGS iterations (default {LBFGS_ITERS})")
    ap.add_argument("-o", "--output", type=Path, default=OUT, help=f"default {OUT}")
    args = ap.parse_args()

    log = Log()
    exact = load_exact()
    model = MLP(1, WIDTH, DEPTH, dtype=jnp.float64, rngs=nnx.Rngs(SEED))
    graphdef, params0 = nnx.split(model)
    w0, unravel = ravel_pytree(params0)
    log(
        f"poisson1d (JAX): 1 -> {DEPTH}x{WIDTH} tanh -> 1, {w0.size} parameters, jax {jax.__version__}, "
        f"flax {version('flax')}, optax {optax.__version__}, jax2onnx {version('jax2onnx')}"
    )

    def net(w, x):
        return nnx.merge(graphdef, unravel(w))(x)

    xb = jnp.array([[-1.0], [1.0]])
    x_eval = np.linspace(-1.0, 1.0, 2048)[:, None]
    u_eval = exact.poisson1d(x_eval)

    def loss_fn(w, x):
        f = lambda z: net(w, z)  # noqa: E731  rows are independent: a batched jvp is per point
        ones = jnp.ones_like(x)
        _, u_xx = jax.jvp(lambda z: jax.jvp(f, (z,), (ones,))[1], (x,), (ones,))
        res = (u_xx + math.pi**2 * jnp.sin(math.pi * x)) / math.pi**2
        return jnp.mean(res**2) + jnp.mean(f(xb) ** 2)

    @jax.jit
    def err_fn(w):
        return jnp.linalg.norm(net(w, x_eval) - u_eval) / jnp.linalg.norm(u_eval)

    # --- Adam on fresh collocation points every step (lr x0.3 at 1/2 and 5/6 of the steps)
    schedule = optax.piecewise_constant_schedule(ADAM_LR, {args.adam // 2: 0.3, args.adam * 5 // 6: 0.3})
    adam = optax.adam(schedule)

    @jax.jit
    def adam_step(w, state, key):
        key, sub = jax.random.split(key)
        x = jax.random.uniform(sub, (N_COLLOC, 1), jnp.float64, -1.0, 1.0)
        loss, g = jax.value_and_grad(loss_fn)(w, x)
        updates, state = adam.update(g, state, w)
        return optax.apply_updates(w, updates), state, key, loss

    w, state, key = w0, adam.init(w0), jax.random.key(SEED)
    for step in range(1, args.adam + 1):
        w, state, key, loss = adam_step(w, state, key)
        if step % 500 == 0 or step == args.adam:
            log(f"adam {step:6d}  loss {float(loss):.3e}  rel_l2 {float(err_fn(w)):.2e}")
    adam_s = log.elapsed()

    # --- L-BFGS on a fixed Chebyshev-Gauss-Lobatto grid (denser near the boundaries)
    k = np.arange(2 * N_COLLOC)
    x_fixed = jnp.asarray(-np.cos(np.pi * k / (2 * N_COLLOC - 1))[:, None])
    loss_fixed = jax.jit(lambda w: loss_fn(w, x_fixed))
    lbfgs = optax.lbfgs(memory_size=50)
    value_and_grad = optax.value_and_grad_from_state(loss_fixed)

    @jax.jit
    def lbfgs_chunk(w, state, n):
        def body(_, carry):
            w, state = carry
            value, g = value_and_grad(w, state=state)
            updates, state = lbfgs.update(g, state, w, value=value, grad=g, value_fn=loss_fixed)
            return optax.apply_updates(w, updates), state

        return jax.lax.fori_loop(0, n, body, (w, state))

    state = lbfgs.init(w)
    best = (float(loss_fixed(w)), w)
    done, chunk = 0, 250
    while done < args.lbfgs:
        n = min(chunk, args.lbfgs - done)
        w, state = lbfgs_chunk(w, state, n)
        done += n
        loss = float(loss_fixed(w))
        if done % 500 == 0 or done == args.lbfgs:
            log(f"lbfgs {done:6d}  loss {loss:.3e}  rel_l2 {float(err_fn(w)):.2e}")
        if math.isfinite(loss) and loss < best[0]:
            best = (loss, w)
        if not math.isfinite(loss):
            log(f"lbfgs diverged at iteration {done}; keeping the best parameters")
            break
    final_loss, w = best
    train_s = log.elapsed()
    err64 = float(err_fn(w))

    # --- float32 copy of the trained network, exported by jax2onnx
    trained = nnx.merge(graphdef, unravel(w))
    model32 = MLP(1, WIDTH, DEPTH, dtype=jnp.float32, rngs=nnx.Rngs(SEED))
    for dst, src in zip(model32.layers, trained.layers):
        dst.kernel[...] = jnp.asarray(src.kernel[...], jnp.float32)
        dst.bias[...] = jnp.asarray(src.bias[...], jnp.float32)
    proto = jax2onnx.to_onnx(
        model32,
        [jax.ShapeDtypeStruct(("B", 1), jnp.float32)],
        opset=OPSET,
        enable_double_precision=False,
        input_names=["x"],
        output_names=["u"],
        model_name="poisson1d_jax",
    )
    proto.ir_version = min(proto.ir_version, IR_VERSION)
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, {"onnx2snn.domain": DOMAIN, "onnx2snn.problem": PROBLEM})
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(args.output))
    ops = [nd.op_type for nd in proto.graph.node]
    opsets = {o.domain or "ai.onnx": o.version for o in proto.opset_import}
    meta = {p.key: p.value for p in proto.metadata_props}
    log(f"exported {args.output}: ops {ops}, opset {opsets}, ir_version {proto.ir_version}, metadata {meta}")

    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(args.output), so, providers=["CPUExecutionProvider"])
    u_onnx = sess.run(["u"], {"x": x_eval.astype(np.float32)})[0].astype(np.float64)
    diff = float(np.abs(u_onnx - np.asarray(model32(jnp.asarray(x_eval, jnp.float32)))).max())
    if diff > 1e-5:
        raise SystemExit(f"{args.output}: onnxruntime differs from the float32 Flax model by {diff:.2e}")
    err_onnx = rel_l2(u_onnx, u_eval)
    print(f"parameters            {w.size}")
    print(f"final loss            {final_loss:.3e}  (L-BFGS iterations {done})")
    print(f"onnxruntime vs float32 Flax: max |difference| {diff:.1e}")
    print(f"rel L2 vs exact, JAX float64,  2048 uniform points: {err64:.3e}")
    print(f"rel L2 vs exact, ONNX float32, 2048 uniform points: {err_onnx:.3e}")
    print(f"Adam {adam_s:.1f} s, training time {train_s:.1f} s, total wall time {log.elapsed():.1f} s")
    if err_onnx > TARGET:
        raise SystemExit(f"poisson1d (JAX): relative L2 {err_onnx:.2e} exceeds the target {TARGET:g}")


if __name__ == "__main__":
    main()
