"""Every numerical tolerance the tests use, in one place, with the reason for its size."""

# Exact rewrites (float32 arithmetic in a different order): MatMul+Add vs Gemm, decode ops.
EXACT_FLOAT32 = 1e-5
# Rounding neuron, constant input: |rate - clip(z)| <= θ/(2T) (+ float32 slack).
def rounding_bound(theta, timesteps):
    return theta / (2 * timesteps) * (1 + 1e-5) + 1e-6
# Default conversion of a fixture at T=32, SNN vs ANN, relative L2 (issue 4's target is 5e-3; this
# test bound is the foundation's: the converted network is close to the ANN, not garbage).
FIXTURE_DEFAULT_T32 = 3e-2
