"""The onnx2snn artifact: what a converted spiking network looks like as an ONNX file.

An artifact is an ordinary ONNX model whose graph contains, besides standard ops, two ops of the custom
domain ``onnx2snn`` (opset 1).  The saved graph computes the first time step; a runtime executes it for
``T`` steps as follows.

``IF`` — a layer of stateful integrate-and-fire neurons, ``K`` neurons per unit::

    inputs : current     [..., n]      synaptic current z(t) of n units
             membrane    [n, K] | [..., n, K]  membrane potential v(t-1); at t = 1 this input is the
                                       initial potential v0 (an initializer, broadcast over the batch);
                                       for t > 1 the runtime feeds back output 1 of the previous step
             bias        [n, K]        per-neuron input shift β (a piecewise-linear piece's knot offset)
             theta_pos   [n, K]        positive threshold θ+ > 0 (``inf``: the neuron never fires, padding)
             theta_neg   [n, K]        negative threshold θ- > 0 (unused when ``signed = 0``)
    outputs: spikes      [..., n, K]   emitted values s(t) ∈ {-θ-, 0, +θ+}  (amplitude-valued events)
             membrane_out[..., n, K]   v(t)
    attributes: signed (int, 0|1), fire_fraction (float a ∈ (0, 1]),
                leak (float λ ∈ (0, 1], optional: absent means λ = 1, the non-leaky neuron; like every
                ONNX float attribute a float32 value),
                coding (string, optional: "rate", the default when absent, "phase" or "delta", below),
                graded (int 0|1, optional: delta coding only)

    u     = λ·v(t-1) + (z(t) + β)                   (integrate; z broadcast over the K neurons of a unit;
                                                      in this order, so every runtime rounds alike; λ in
                                                      the artifact's dtype; λ = 1: u = v(t-1) + (z(t) + β))
    s(t)  = +θ+  if u >= a·θ+
            -θ-  if signed and u <= -a·θ-
            0    otherwise                          (at most one spike per step)
    v(t)  = u - s(t)                                (reset by subtraction)

A leak λ < 1 makes the neuron leaky integrate-and-fire (the membrane decays by λ per step before the
input is added); a leak outside (0, 1] or not finite is refused when the artifact is loaded.

``coding = "phase"`` (weighted spikes, Kim et al. 2018): the current enters once, into a membrane that
saturates at the thresholds, and the thresholds halve every step, so the T steps send the signed binary
digits of the input, most significant first::

    u     = clip(v(0) + z(1) + β, -θ-, θ+)   at t = 1    (no lower bound when unsigned)
    u     = v(t-1)                           for t > 1    (no leak: λ must be 1)
    θ±_t  = θ± · 2^(1-t)                                  (exact in binary floating point)
    d(t)  = +1 if u >= a·θ+_t;  -1 if signed and u <= -a·θ-_t;  0 otherwise
    v(t)  = u - d(t)·θ±_t                                 (θ+_t for d = +1, θ-_t for -1)
    s(t)  = T · d(t)·θ±_t                                 (the event's amplitude)

so the Decode's mean (1/T)·Σ_t s(t) = Σ_t d(t)·θ±_t: with a = 1/2, v0 = 0 and θ+ = θ- = θ it is
clip(z + β, -θ, θ) rounded to a multiple of θ·2^(1-T) (|error| <= θ·2^-T: T digits are worth a rate code
of 2^(T-1) steps), from at most T events; a unit at 0 sends none and a unit saturated at ±θ one.  Only
z(1) is read, so a phase layer is fed a static current (the converter puts a Decode between phase layers:
each layer is its own stage of T steps, and its events are weighted synaptic operations).

``coding = "delta"`` (sigma-delta / send-on-delta neurons, as Loihi 2's): a *streaming* artifact, whose
time steps are its points.  Step t reads row t (axis 0) of the node's current — one point per step, in the
order the rows are given — and the state persists from one point to the next.  The current a(t) is the
unit's activation value, computed by standard ops from the input the unit has accumulated (the original
``h(x·W + b)``); the membrane input is r(0), the value the receivers hold before the first point; the
thresholds are the event sizes; ``signed`` must be 1 and ``leak`` 1::

    u(t) = (a(t) + β) - r(t-1)                     (the change not yet sent)
    k(t) = +max(1, floor(u/θ+ + (1 - a)))   if u >= a·θ+
           -max(1, floor(-u/θ- + (1 - a)))  if u <= -a·θ-
           0                                 otherwise
    s(t) = k·θ+ if k > 0,  k·θ- if k < 0,  else 0  (output 0: the amplitude sent)
    r(t) = r(t-1) + s(t)                           (output 1: the value sent so far)

so |a(t) + β - r(t)| < a·θ± after every step (a = 1/2: the change rounded to a multiple of θ; a = 1: the
level-crossing neuron that sends once its value moved by θ).  Attribute ``graded`` (int, optional, 0 when
absent): 0 sends |k| binary events of amplitude ±θ (a spike count is Σ|k|), 1 one graded event carrying
s(t) (a count is the number of units that send).  Each event adds its weighted amplitude to its targets'
input, so after step t a receiver holds W·r(t) + b (W·r(0) folded into b when the chip is loaded); the
graph states the same value directly: the next layer reads output 1, r(t) [..., n, 1], through a
``ReduceSum`` over the last axis.  Evaluating the graph on all rows at once, each delta node scanning its
rows in order, is therefore the streaming execution.  Every IF node of a delta artifact is delta-coded
(no Decode); the inputs of a separable network each stream their own rows.

A delta stream's arithmetic is specified, so that every runtime sends the same events: a unit whose
change lands within one rounding of a level fires or not depending on the last bit of its activation.
It computes in float64 — floating inputs, initializers and the IF parameters upcast (exact for float32),
the state r(t) in float64, the outputs cast back to their declared types — with the contractions (MatMul,
Gemm, ReduceSum/ReduceMean, Einsum) summed in a fixed order and the activations (Tanh, Sin, Cos, Exp,
Sigmoid) computed by fixed sequences of correctly rounded IEEE-754 operations, as
``runtimes.stream_math`` states them; ops without such an algorithm are the numpy reference's kernels.

``a = 1`` with ``v0 = θ/2`` is the papers' "floor" neuron; ``a = 1/2`` with ``v0 = 0`` is the symmetric
"rounding" neuron (a sigma-delta modulator): without leak, for a constant input its rate (1/T)·Σ s lies
within θ/(2T) of clip(z + β, -θ-, θ+).  Events carry their amplitude (θ+ or -θ-), so no weight folding is
needed for asymmetric thresholds; a spike count is the number of non-zero entries of ``spikes``.

A unit's value is decoded per step by standard ops that follow the IF node::

    y(t) = Σ_k w[n, k] · s(t)[..., n, k] + c[n]      (Mul, ReduceSum over the last axis, Add)

which realises the piecewise-linear expansion h(z) ≈ c + Σ_k w_k·clip(z + β_k, 0, θ_k) with w_k the
slopes (or, for one neuron per unit, w = 1 and c = 0).

``Decode`` — the boundary between time-stepped and analog computation::

    inputs : x(t)  any shape;   outputs: x̄ = (1/T) Σ_{t=1..T} x(t)

Tensors that depend on an IF output, not through a Decode, are *step* tensors, recomputed every step;
all other tensors are *static*: computed once (direct encoding: the analog input drives the first affine
layer with the same current at every step).  Ops downstream of a Decode see decoded values.

Model metadata (``metadata_props``) records the keys below.
"""

from __future__ import annotations

DOMAIN = "onnx2snn"
DOMAIN_VERSION = 1
IF_OP = "IF"
DECODE_OP = "Decode"
FORMAT_VERSION = "1"

# IF node attributes (``leak`` and ``coding`` are optional; their absence means 1.0 and "rate").
IF_SIGNED, IF_FIRE_FRACTION, IF_LEAK, IF_CODING = "signed", "fire_fraction", "leak", "coding"
CODING_RATE, CODING_PHASE = "rate", "phase"
CODING_DELTA, IF_GRADED = "delta", "graded"      # streaming sigma-delta neurons and their event kind
# The most steps (binary digits) a phase-coded artifact runs: θ·2^(1-T) stays a normal float32 for any
# threshold above 1e-32, and 20 digits are already below float32's resolution of a unit's value (2^-24).
MAX_PHASE_DIGITS = 20

# IF node input / output positions.
IF_CURRENT, IF_MEMBRANE, IF_BIAS, IF_THETA_POS, IF_THETA_NEG = range(5)
IF_SPIKES, IF_MEMBRANE_OUT = range(2)

META_FORMAT = "onnx2snn.format_version"
META_TIMESTEPS = "onnx2snn.timesteps"
META_ENCODING = "onnx2snn.encoding"
META_READOUT = "onnx2snn.readout"
META_DOMAIN = "onnx2snn.domain"
META_NEURON = "onnx2snn.neuron"
META_SOURCE = "onnx2snn.source"

# The ONNX IR version artifacts are written with (onnxruntime 1.31 reads at most IR 13).
IR_VERSION = 10
