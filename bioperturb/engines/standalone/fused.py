r"""Fused recurrent work for the cpp_standalone engine: W_rec in one pass, updates by GEMM.

In Brian2's model language every use of a weight matrix is its own loop over the
synapses, through the index arrays ``_synaptic_pre``/``_synaptic_post``. A TD-ANP step
therefore passes three times over W_rec (the clean current Σ_j w r_j, the noisy one
Σ_j w r̃_j, and the eligibility/accumulation code) where a forward-only step passes once;
that fixes TD-ANP/forward at about 3 (docs/engines.md). The standalone engine replaces,
for W_rec only, these passes by C++ that Brian2 calls through :class:`brian2.Function`
objects (a header compiled into every code object of the program):

**Currents** (every step, slot ``groups``, order −1, where the summed updaters ran): one
pass over the dense, pre-major weight array gives both twins,

.. math::   I_j = \sum_i w_{ij} x_i, \qquad \tilde I_j = \sum_i w_{ij} \tilde x_i

(x = r, or r̂ with decorrelation); dense: four presynaptic rows summed before they are
added, so the sums are reassociated (sparse: in the summed updaters' order).

**Accumulation** (rules whose W_rec product is separable, p_{ij,t} = a_{j,t} b_{i,t}: TD-ANP,
NP, online ANP with a trial-end update; see
:meth:`~bioperturb.rules.perturbation.PerturbationRule.separable_product`). A hidden-group
operation evaluates the postsynaptic factor a (e.g. nrm·(h̃ − h)) and the presynaptic
factor b (e.g. r_prev) at the rules' slot (``start``, order 4); a C++ call stores them and
the broadcast signal g_t (order 5). At the trial's end, before the optimiser step, the
trial's update is formed as one matrix product. The per-step rule

.. math::   e_t = λ e_{t-1} + a_t b_t^⊤, \qquad \mathrm{acc} \mathrel{+}= g_t\, e_t
            \quad (\text{dense signal}), \qquad \mathrm{acc} \mathrel{+}= g_T\, e_T
            \quad (\text{trial-end signal})

sums to

.. math::   \mathrm{acc} \mathrel{+}= \sum_s G_s\, a_s b_s^⊤, \qquad
            G_s = g_s + λ G_{s+1}\ (\text{dense}), \qquad G_s = g_T λ^{T-s}\
            (\text{trial end}),

the same quantity with the sums reordered (equal to float precision; tested against the
runtime engine). The eligibility trace e is never stored: the per-synapse work per trial is
one GEMM of (N × steps)·(steps × N) instead of a pass per step. Steps with G_s = 0 are
dropped, so TD-ANP's and NP's evaluation trials (no noise: g = 0) skip it (online ANP's
signal is not 0 there). For finite values this is exact; a non-finite factor on a step
with G_s = 0 would make Brian2's acc NaN but not the fused one (such a state shows up in
the losses, which the divergence check reads).

Online updates (``rule.apply = "online"``: the currents are fused, the update stays in
Brian2's code) and weight perturbation (the noisy twin sees w + ψ: nothing is fused) keep
Brian2's code; ``[engine] fuse`` says whether to fuse ("auto": where possible; "on": fail
where it is not; "off": never).

**Spiking networks** keep their event-driven currents (a spike adds w to its targets' h:
cheap at a few Hz), so only the accumulation is fused, of W_rec and of W_in alike
(``FusionPlan.batched_in``; a LIF network's inputs are often as many as its units): the
per-step, per-synapse trace update is what makes a LIF TD-ANP step cost many forward
steps (benchmarks/results/lif_speed.md). The W_in factors are a_t on the hidden units and
b_t on the input units (``u_prev``), the same GEMM with the inputs as rows. A *sparse*
W_rec of a spiking network lives in slots like the rate network's (below), so its spikes
are propagated here too (``FusionPlan.spikes``, ``bp_spikes`` in the ``synapses`` slot):
each spike of the step (Brian2's spikespace of ``spike`` and of the twin's ``spike_n``)
adds its row of slots to its targets' h (conductance synapses: w > 0 to ge, w < 0 to gi),
what the ``on_pre`` pathways do for a dense W_rec.

**Sparse W_rec** (``model.p_connect`` < 1) is stored as a fixed number of synapse slots,
:func:`~bioperturb.resources.sparse_slots` (the expected count plus 8 standard deviations,
so one program serves every seed): slot e holds the synapse ``cell[e]`` = i·N + j (a run
argument, the existing synapses in increasing order, then −1 for the unused slots). Brian2's
own indices of these slots are placeholders that no code reads: the C++ does all of
W_rec's work, reading rows of the slots (row i: the slots with i·N ≤ cell < (i + 1)·N),
so per-synapse state follows the existing synapses, not N². The update is one dot
product over the steps per existing synapse.

**Threads**: the calls run on a group of one unit per OpenMP thread; each thread's unit
index selects its share (output columns for the currents, rows of acc for the update).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from brian2 import Function, NeuronGroup

__all__ = [
    "FusionPlan",
    "fusion_plan",
    "protocol_fusion",
    "install_fused",
    "fused_header",
    "cpp_function",
    "FUSED_HEADER_NAME",
]

#: file name of the C++ header the standalone builder writes next to the program
FUSED_HEADER_NAME = "bioperturb_fused.h"


@dataclass(frozen=True)
class FusionPlan:
    """What the fused engine takes over from Brian2's code for W_rec."""

    #: both twins' recurrent currents in one pass
    currents: bool
    #: the rule's accumulation of W_rec as a trial-end matrix product
    batched: bool
    #: why (part of) the work stays in Brian2's code; empty when everything is fused
    reason: str = ""
    #: W_rec is sparse (``model.p_connect`` < 1): synapse slots whose ``cell`` (a run
    #: argument) says which synapse each holds; C++ loops over the existing synapses only
    sparse: bool = False
    #: OpenMP threads of the program: the fused calls split their work among them
    threads: int = 1
    #: W_in's accumulation too (spiking networks, whose inputs are as many as their units)
    batched_in: bool = False
    #: a spiking network's W_rec spike propagation (its sparse slots carry no Brian2 indices)
    spikes: bool = False

    @property
    def active(self) -> bool:
        return self.currents or self.batched or self.batched_in or self.spikes

    def describe(self) -> str:
        """Short label for the Dataset's ``engine`` attribute."""
        parts = [
            p
            for p, on in (
                ("currents", self.currents),
                ("spikes", self.spikes),
                ("gemm", self.batched),
                ("gemm_in", self.batched_in),
            )
            if on
        ]
        if not parts:
            return "unfused"
        return ("fused-sparse-" if self.sparse else "fused-") + "+".join(parts)

    @property
    def complete(self) -> bool:
        """Whether no W_rec work is left to Brian2's code (what sparse W_rec needs)."""
        return (self.currents or self.spikes) and (self.batched or not self.reason)

    def install(self, handle: Any, rule: Any) -> None:
        """:func:`install_fused` with this plan (what the network builder calls)."""
        install_fused(handle, rule, self)


def fusion_plan(model: Any, rule: Any) -> FusionPlan:
    """Which of W_rec's work can be fused for ``model`` and ``rule``."""
    from bioperturb.modelspec import model_family
    from bioperturb.rules.perturbation import PerturbationRule

    sparse = getattr(model, "p_connect", 1.0) < 1
    if rule.twin and rule.noisy_weight != "w":
        return FusionPlan(False, False, "the noisy twin sees perturbed weights (rule 'wp')")
    if model_family(getattr(model, "kind", "rate")) != "rate":
        # event-driven currents stay; a separable trial-end update of W_rec and W_in is
        # formed by the GEMM (the per-step, per-synapse trace dominates a LIF TD-ANP step)
        why = "spiking networks keep Brian2's event-driven synapses"
        perturbation = rule.plastic and isinstance(rule, PerturbationRule)
        rec, inp = (perturbation and rule.batchable(m) for m in ("W_rec", "W_in"))
        if not sparse:
            return FusionPlan(False, rec, why, batched_in=inp)
        # sparse: W_rec lives in slots, so the C++ propagates its spikes and forms its update
        if getattr(model, "dale", False):
            why = "Dale's law projects W_rec per presynaptic neuron in Brian2's code"
        elif getattr(model, "decorrelate", ()):
            why = "decorrelation sums W_rec's currents every step in Brian2's code"
        elif rule.plastic and "W_rec" in rule.params.train and not rec:
            why = "the rule's W_rec update stays in Brian2's code (not a trial-end product)"
        else:
            return FusionPlan(False, rec, sparse=True, batched_in=inp, spikes=True)
        return FusionPlan(False, rec, why, sparse=True, batched_in=inp)
    if not rule.plastic or not isinstance(rule, PerturbationRule):
        return FusionPlan(True, False, sparse=sparse)
    if "W_rec" not in rule.params.train:
        return FusionPlan(True, False, sparse=sparse)
    if rule.online:
        return FusionPlan(
            True, False, "rule.apply = 'online' changes W_rec every step", sparse=sparse
        )
    if not rule.batchable("W_rec"):
        return FusionPlan(True, False, "the rule's W_rec product is not post × pre", sparse)
    return FusionPlan(True, True, sparse=sparse)


def cpp_function(name: str, code: str) -> Function:
    """A one-argument Brian2 function implemented only in C++ (``code``); never hoisted."""
    fn = Function(
        lambda flag: flag,  # never called: standalone programs only
        arg_units=[1],
        return_unit=1,
        arg_names=["flag"],
        stateless=False,
    )
    fn.implementations.add_implementation("cpp", code, name=name)
    return fn


def protocol_fusion(protocol: Any) -> FusionPlan:
    """What a standalone program of ``protocol`` fuses (``engine.fuse``, its threads)."""
    from bioperturb.rules import get_rule

    engine = protocol.engine
    if engine.fuse == "off":
        return FusionPlan(False, False, "engine.fuse = 'off'")
    plan = fusion_plan(protocol.model, get_rule(protocol.rule_name)(protocol.rule))
    return dataclasses.replace(plan, threads=engine.threads)


def _c_function(name: str) -> Function:
    """A call into the fused header's ``bioperturb_fused::<name>``."""
    call = f"bioperturb_fused::{name}(flag)"
    return cpp_function(
        name, f"static inline double {name}(const double flag) {{ return {call}; }}"
    )


def install_fused(handle: Any, rule: Any, plan: FusionPlan) -> None:
    """Add the fused calls to a network built without W_rec's summed currents.

    Call after the rule's equations exist (the factors read its variables) and before
    ``rule.install`` (which skips the matrices in ``handle.batched``). The calls run on a
    group of one unit per OpenMP thread: Brian2 hands each thread one unit, whose index
    selects the thread's share of the work (disjoint output ranges, no locks).
    """
    calls = NeuronGroup(plan.threads, "fused_dummy : 1", clock=handle.clock, name="bp_fused")
    ns = handle.namespace

    def call(name: str, **schedule: Any) -> None:
        ns[name] = _c_function(name)
        calls.run_regularly(f"fused_dummy = {name}(i)", name=f"bp_fused_{name[3:]}", **schedule)

    trial_end = dict(clock=handle.trial_clock, when="end")
    if plan.currents:
        call("bp_currents", when="groups", order=-1)
    if plan.spikes:  # where Brian2's pathways add w (W_in's still do)
        call("bp_spikes", when="synapses", order=-1)
    factors = dict(when="start", order=4)
    batched = []
    if plan.batched:
        post, pre = rule.separable_product("W_rec")
        handle.hidden.run_regularly(
            f"fused_a = {post}\nfused_b = {pre}", name="bp_fused_factors", **factors
        )
        batched.append(("W_rec", ""))
    if plan.batched_in:  # the post factor on the hidden units, the pre factor on the inputs
        post, pre = rule.separable_product("W_in")
        handle.hidden.run_regularly(f"fused_a_in = {post}", name="bp_fused_post_in", **factors)
        handle.inputs.run_regularly(f"fused_b = {pre}", name="bp_fused_pre_in", **factors)
        batched.append(("W_in", "_in"))
    for _, m in batched:
        call(f"bp_record{m}", when="start", order=5)
        call(f"bp_accumulate{m}", order=-1, **trial_end)  # before the optimiser step (0)
        call(f"bp_restart{m}", order=1, **trial_end)  # the next trial's steps
    if batched:
        handle.batched = tuple(name for name, _ in batched)
    handle.extra_objects.append(calls)


def fused_header(handle: Any, rule: Any, plan: FusionPlan, device: Any, twin: bool) -> str:
    """The C++ of the fused calls for the built network ``handle`` (standalone device)."""

    def arr(group: Any, var: str) -> str:
        return "brian::" + device.get_array_name(group.variables[var], access_data=False)

    hidden, syn = handle.hidden, handle.synapses["W_rec"]
    xvar = "rhat" if "rhat" in hidden.variables else "r"
    n_steps = round(float(handle.trial_clock.dt_) / float(handle.clock.dt_))
    cur = plan.currents  # without: the current code is compiled out, its arrays unnamed
    code = _HEADER.format(
        N=len(hidden),
        T=n_steps + 1,
        NT=plan.threads,
        W=arr(syn, "w"),
        PRE=arr(syn, "_synaptic_pre"),
        POST=arr(syn, "_synaptic_post"),
        CURRENTS=int(cur),
        X=arr(hidden, xvar) if cur else "0",
        I=arr(hidden, "I_rec") if cur else "0",
        XN=arr(hidden, f"{xvar}_n") if twin and cur else "0",
        IN=arr(hidden, "I_rec_n") if twin and cur else "0",
        TW="" if twin else "// ",  # comments out the noisy twin's lines
        SPARSE=int(plan.sparse),
        CELL=arr(syn, "cell") if plan.sparse else "0",
    )
    code = code.replace("// @SPIKES@\n", _spikes_code(handle, plan, arr) if plan.spikes else "")
    batched = []
    for name, on, m, pre in (
        ("W_rec", plan.batched, "", hidden),
        ("W_in", plan.batched_in, "_in", handle.inputs),
    ):
        if on:
            batched.append(
                _BATCHED.format(
                    M=m,
                    NPRE=len(pre),
                    SP=int(plan.sparse and name == "W_rec"),
                    CELL=arr(syn, "cell") if plan.sparse and name == "W_rec" else "0",
                    A=arr(hidden, f"fused_a{m}"),
                    B=arr(pre, "fused_b"),
                    GATE=arr(hidden, "gate"),
                    ACC=arr(handle.synapses[name], "acc"),
                    DECAY=repr(rule.trace_decay(name, float(handle.clock.dt_))),
                    DENSE="true" if rule.signal == "dense" else "false",
                )
            )
    return code.replace("// @BATCHED@\n", "".join(batched))


def _spikes_code(handle: Any, plan: FusionPlan, arr: Any) -> str:
    """C++ of ``bp_spikes``: each spike of this step adds its W_rec row to its targets'
    currents (conductance synapses: w > 0 opens ge, w < 0 gi), for each twin, as Brian2's
    ``on_pre`` pathways would; thread tid adds into its share of the targets."""
    hidden, syn = handle.hidden, handle.synapses["W_rec"]
    cond = "ge" in hidden.variables
    twins = [("", "_spikespace")] + ([("_n", "_spike_nspace")] if "v_n" in hidden.variables else [])
    loops = []
    for s, space in twins:
        if cond:
            add = (
                f"if (x > 0.0) {arr(hidden, f'ge{s}')}[j] += x; "
                f"else {arr(hidden, f'gi{s}')}[j] += -x;"
            )
        else:
            add = f"{arr(hidden, f'h{s}')}[j] += x;"
        loops.append(_SPIKES_LOOP.format(SPACE=arr(hidden, space), ADD=add, W=arr(syn, "w")))
    return _SPIKES.format(LOOPS="".join(loops), CELL=arr(syn, "cell"))


_SPIKES = r"""
// Sparse W_rec of a spiking network: this step's spikes (Brian2's spikespace of the clean
// spike and of the twin's spike_n: the indices, their count at [N]) add their rows.
inline double bp_spikes(const double tid) {{
    const Layout &L = layout();
    const int32_t *__restrict cell = &{CELL}[0];
    const long *first = &L.first[(long)tid * N], *last = &L.last[(long)tid * N];
{LOOPS}    return 0.0;
}}
"""

_SPIKES_LOOP = r"""    {{
        const int32_t *space = {SPACE};
        const long count = space[N];
        for (long s = 0; s < count; s++) {{
            const long i = space[s];
            for (long e = first[i]; e < last[i]; e++) {{
                const long j = cell[e] - i * N;
                const double x = {W}[e];
                {ADD}
            }}
        }}
    }}
"""


# C++11 (Brian2's standalone flags); str.format fields in braces, C++ braces doubled.
# Shared state lives in function-local statics of inline functions: one instance for the
# whole program, whichever code object includes the header (their initialisation is
# thread-safe in C++11). Every call gets its thread's index `tid` (0 … NT − 1) and works on
# the thread's own slice: output columns j for the currents, rows i (presynaptic units) of
# acc for the update.
_HEADER = r"""// bioperturb: fused W_rec currents, trial-end GEMM accumulation (standalone/fused.py)
#ifndef BIOPERTURB_FUSED_H
#define BIOPERTURB_FUSED_H
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>
#include "objects.h"

namespace bioperturb_fused {{
const long N = {N};    // hidden units
const long T = {T};    // room for the steps stored per trial (a trial's steps, + 1 spare)
const long NT = {NT};  // threads: the calls' group has one unit per thread
#define BP_SPARSE {SPARSE}  // W_rec sparse: slots e hold the synapses cell[e] = i N + j
#define BP_CURRENTS {CURRENTS}  // the W_rec currents are fused (rate networks)

inline void fail(const std::string &msg) {{
    std::cerr << "bioperturb (fused W_rec): " << msg << std::endl;
    std::exit(3);
}}

// [begin, end) of thread tid's share of n units, in multiples of `align`
inline void share(long tid, long n, long align, long &begin, long &end) {{
    long chunk = (n + NT - 1) / NT;
    chunk = (chunk + align - 1) / align * align;
    begin = tid * chunk < n ? tid * chunk : n;
    end = begin + chunk < n ? begin + chunk : n;
}}

// Sparse W_rec: row i (presynaptic unit) is the slots [start[i], start[i + 1]); per thread
// and row the slots whose column j = cell - i N lies in the thread's share.
struct Layout {{
    std::vector<long> start;  // N + 1
    std::vector<long> first;  // NT * N: first slot of row i in thread t's columns
    std::vector<long> last;   // NT * N: one past its last
}};

// Checked once per program run (the run arguments are applied before the network runs).
// Dense: the weights are all-to-all and pre-major (k = i N + j), as Synapses.connect()
// makes them. Sparse: the cells increase, then only unused slots (cell = -1) follow.
inline Layout make_layout() {{
    Layout L;
#if BP_SPARSE
    const long K = (long){W}.size();
    const int32_t *cell = &{CELL}[0];
    L.start.assign(N + 1, 0);
    long used = 0, prev = -1;
    for (; used < K && cell[used] >= 0; used++) {{
        if ((long)cell[used] <= prev || (long)cell[used] >= N * N)
            fail("W_rec cells are not increasing cells of the N x N matrix");
        prev = cell[used];
        L.start[prev / N + 1]++;
    }}
    for (long k = used; k < K; k++)
        if (cell[k] != -1) fail("W_rec: a used slot after an unused one");
    for (long i = 0; i < N; i++) L.start[i + 1] += L.start[i];
    L.first.resize(NT * N);
    L.last.resize(NT * N);
    for (long t = 0; t < NT; t++) {{
        long j0, j1;
        share(t, N, 8, j0, j1);
        for (long i = 0; i < N; i++) {{
            long e = L.start[i];
            while (e < L.start[i + 1] && cell[e] - i * N < j0) e++;
            L.first[t * N + i] = e;
            while (e < L.start[i + 1] && cell[e] - i * N < j1) e++;
            L.last[t * N + i] = e;
        }}
    }}
#else
    if ((long){W}.size() != N * N) fail("W_rec is not all-to-all");
    for (long k = 0; k < N * N; k++)
        if ({PRE}[k] != k / N || {POST}[k] != k % N)
            fail("W_rec synapses are not in pre-major order");
#endif
    return L;
}}

inline Layout &layout() {{
    static Layout L = make_layout();
    return L;
}}

#if BP_CURRENTS
// I_j = sum_i w_ij x_i (and the noisy twin's) for thread tid's columns j, in one pass over
// w; dense: four presynaptic rows at a time, so the outputs are loaded and stored N/4 times.
inline double bp_currents(const double tid) {{
    Layout &L = layout();
    long j0, j1;
    share((long)tid, N, 8, j0, j1);
    const double *__restrict x = {X};
    double *__restrict out = {I};
    {TW}const double *__restrict xn = {XN};
    {TW}double *__restrict outn = {IN};
    for (long j = j0; j < j1; j++) out[j] = 0.0;
    {TW}for (long j = j0; j < j1; j++) outn[j] = 0.0;
#if BP_SPARSE
    const int32_t *__restrict cell = &{CELL}[0];
    const double *__restrict cw = &{W}[0];
    const long *first = &L.first[(long)tid * N], *last = &L.last[(long)tid * N];
    for (long i = 0; i < N; i++) {{
        const double xi = x[i];
        {TW}const double xni = xn[i];
        for (long e = first[i]; e < last[i]; e++) {{
            const long j = cell[e] - i * N;
            out[j] += cw[e] * xi;
            {TW}outn[j] += cw[e] * xni;
        }}
    }}
    return 0.0;
#endif
    (void)L;
    const double *__restrict w = &{W}[0];
    long i = 0;
    for (; i + 4 <= N; i += 4) {{
        const double *__restrict w0 = w + i * N, *__restrict w1 = w0 + N;
        const double *__restrict w2 = w1 + N, *__restrict w3 = w2 + N;
        const double x0 = x[i], x1 = x[i + 1], x2 = x[i + 2], x3 = x[i + 3];
        {TW}const double n0 = xn[i], n1 = xn[i + 1], n2 = xn[i + 2], n3 = xn[i + 3];
        for (long j = j0; j < j1; j++) {{
            out[j] += w0[j] * x0 + w1[j] * x1 + w2[j] * x2 + w3[j] * x3;
            {TW}outn[j] += w0[j] * n0 + w1[j] * n1 + w2[j] * n2 + w3[j] * n3;
        }}
    }}
    for (; i < N; i++) {{
        const double *__restrict wi = w + i * N;
        for (long j = j0; j < j1; j++) {{
            out[j] += wi[j] * x[i];
            {TW}outn[j] += wi[j] * xn[i];
        }}
    }}
    return 0.0;
}}
#endif
// @SPIKES@
// @BATCHED@
}}  // namespace bioperturb_fused
#endif
"""

_BATCHED = r"""
// Matrix W{M} (suffix "{M}": "" for W_rec, "_in" for W_in): NP{M} presynaptic units.
const long NP{M} = {NPRE};
// The trial's stored factors (written by thread 0 only) and each thread's work buffers.
struct Store{M} {{
    std::vector<double> a, b, g;  // post factors (T x N), pre factors (T x NP), signal (T)
    long n;                       // steps stored since the last trial end
    Store{M}() : a(T * N), b(T * NP{M}), g(T), n(0) {{}}
}};
struct Work{M} {{
    std::vector<double> G, pa, pb;  // G_s; packed post and pre factors
    std::vector<long> keep;         // the steps with G_s != 0
    Work{M}() : G(T), pa(T * N), pb(T * NP{M}), keep(T) {{}}
}};
inline Store{M} &store{M}() {{
    static Store{M} S;
    return S;
}}
inline Work{M} &work{M}(long tid) {{
    static std::vector<Work{M}> W(NT);
    return W[tid];
}}

// Store a_t (post factor), b_t (pre factor) and g_t (the broadcast signal) of this step.
inline double bp_record{M}(const double tid) {{
    if (tid != 0) return 0.0;
    Store{M} &S = store{M}();
    if (S.n >= T) fail("more steps than a trial between two trial ends");
    double *a = &S.a[S.n * N], *b = &S.b[S.n * NP{M}];
    for (long j = 0; j < N; j++) a[j] = {A}[j];
    for (long i = 0; i < NP{M}; i++) b[i] = {B}[i];
    S.g[S.n] = {GATE}[0];
    S.n++;
    return 0.0;
}}

// After the optimiser step: the next trial stores from its first step.
inline double bp_restart{M}(const double tid) {{
    if (tid == 0) store{M}().n = 0;
    return 0.0;
}}

// At the trial's end, before the optimiser step: acc_ij += sum_s G_s a_sj b_si for thread
// tid's rows i (engines/standalone/fused.py). Every thread derives G and the kept steps itself.
inline double bp_accumulate{M}(const double tid) {{
    const Store{M} &S = store{M}();
    Work{M} &K = work{M}((long)tid);
    const long n = S.n, NPRE = NP{M};
    if (n == 0) return 0.0;
    const double decay = {DECAY};
    std::vector<double> &G = K.G;
    if ({DENSE}) {{  // G_s = g_s + decay G_(s+1)
        G[n - 1] = S.g[n - 1];
        for (long s = n - 2; s >= 0; s--) G[s] = S.g[s] + decay * G[s + 1];
    }} else {{  // G_s = g_T decay^(T - s)
        double weight = {GATE}[0];
        for (long s = n - 1; s >= 0; s--) {{
            G[s] = weight;
            weight *= decay;
        }}
    }}
    long m = 0;
    for (long s = 0; s < n; s++)
        if (G[s] != 0.0) K.keep[m++] = s;
    if (m == 0) return 0.0;  // e.g. an evaluation trial
    const long *keep = &K.keep[0];
    const double *a = &S.a[0], *b = &S.b[0];
    double *pa = &K.pa[0], *pb = &K.pb[0];
    double *__restrict acc = &{ACC}[0];
    long i0, i1;
    share((long)tid, NPRE, 4, i0, i1);
#if {SP}
    // for the existing synapses only, in blocks of 128 steps: factors transposed
    // ([unit][step]) so that each synapse is a contiguous dot product over cached panels
    const Layout &L = layout();
    const long KB = 128;
    for (long k0 = 0; k0 < m; k0 += KB) {{
        const long kb = k0 + KB < m ? KB : m - k0;
        for (long k = 0; k < kb; k++) {{
            const long s = keep[k0 + k];
            for (long j = 0; j < N; j++) pa[j * kb + k] = G[s] * a[s * N + j];
            for (long i = i0; i < i1; i++) pb[i * kb + k] = b[s * NPRE + i];
        }}
        const int32_t *__restrict cell = &{CELL}[0];
        for (long i = i0; i < i1; i++) {{
            const double *__restrict bi = pb + i * kb;
            for (long e = L.start[i]; e < L.start[i + 1]; e++) {{
                const double *__restrict aj = pa + (cell[e] - i * N) * kb;
                double c = 0.0;
                for (long k = 0; k < kb; k++) c += bi[k] * aj[k];
                acc[e] += c;  // slot e
            }}
        }}
    }}
    return 0.0;
#endif
    // dense: the kept steps packed in panels, post factors G_s a_s in panels of 8 units
    // ([j/8][k][8]), this thread's pre factors in panels of 4 ([i/4][k][4]); then
    // acc (pre-major: acc[i N + j]) += B^T A in 4 x 8 register tiles, steps in blocks of 256
    const long J8 = N - N % 8, I4 = NPRE - NPRE % 4;
    const long t1 = i1 < I4 ? i1 : I4;  // this thread's whole row tiles: [i0, t1)
    for (long j = 0; j < J8; j += 8)
        for (long k = 0; k < m; k++)
            for (int v = 0; v < 8; v++) pa[j * m + k * 8 + v] = G[keep[k]] * a[keep[k] * N + j + v];
    for (long i = i0; i < t1; i += 4)
        for (long k = 0; k < m; k++)
            for (int u = 0; u < 4; u++) pb[i * m + k * 4 + u] = b[keep[k] * NPRE + i + u];
    for (long k0 = 0; k0 < m; k0 += 256) {{
        const long k1 = k0 + 256 < m ? k0 + 256 : m;
        for (long j = 0; j < J8; j += 8)
            for (long i = i0; i < t1; i += 4) {{
                double c[4][8] = {{{{0.0}}}};
                const double *pj = pa + j * m, *pi = pb + i * m;
                for (long k = k0; k < k1; k++) {{
                    const double *as = pj + k * 8, *bs = pi + k * 4;
                    for (int u = 0; u < 4; u++)
                        for (int v = 0; v < 8; v++) c[u][v] += bs[u] * as[v];
                }}
                for (int u = 0; u < 4; u++)
                    for (int v = 0; v < 8; v++) acc[(i + u) * N + j + v] += c[u][v];
            }}
    }}
    for (long i = i0; i < i1; i++)  // the edges, when N is not a multiple of 8 or NP of 4
        for (long j = (i < I4 ? J8 : 0); j < N; j++) {{
            double c = 0.0;
            for (long k = 0; k < m; k++)
                c += G[keep[k]] * a[keep[k] * N + j] * b[keep[k] * NPRE + i];
            acc[i * N + j] += c;
        }}
    return 0.0;
}}
"""
