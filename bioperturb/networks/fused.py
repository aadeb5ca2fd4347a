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

(x = r, or r̂ with decorrelation), in the summed updaters' order of summation.

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
one GEMM of (N × steps)·(steps × N) instead of a pass per step, and evaluation trials
(g = 0) skip it.

Online updates (``rule.apply = "online"``), weight perturbation (the noisy twin sees
w + ψ), sparse and spiking networks keep Brian2's code; ``training.fuse`` says whether to
fuse ("auto": where possible; "on": fail where it is not; "off": never).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from brian2 import Function, NeuronGroup

__all__ = [
    "FusionPlan",
    "fusion_plan",
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
    #: W_rec is sparse (``model.p_connect`` < 1): dense Brian2 storage, a per-synapse
    #: constant ``exists`` (a run argument), and C++ loops over the existing synapses only
    sparse: bool = False

    @property
    def active(self) -> bool:
        return self.currents or self.batched

    def describe(self) -> str:
        """Short label for the Dataset's ``engine`` attribute."""
        parts = [p for p, on in (("currents", self.currents), ("gemm", self.batched)) if on]
        if not parts:
            return "unfused"
        return ("fused-sparse-" if self.sparse else "fused-") + "+".join(parts)

    @property
    def complete(self) -> bool:
        """Whether no W_rec work is left to Brian2's code (what sparse W_rec needs)."""
        return self.currents and (self.batched or not self.reason)


def fusion_plan(model: Any, rule: Any) -> FusionPlan:
    """Which of W_rec's work can be fused for ``model`` and ``rule``."""
    from bioperturb.rules.perturbation import PerturbationRule

    if getattr(model, "kind", "rate") != "rate":
        return FusionPlan(False, False, "spiking networks keep Brian2's event-driven synapses")
    sparse = getattr(model, "p_connect", 1.0) < 1
    if rule.twin and rule.noisy_weight != "w":
        return FusionPlan(False, False, "the noisy twin sees perturbed weights (rule 'wp')")
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


def _c_function(name: str) -> Function:
    """A call into the fused header's ``bioperturb_fused::<name>``."""
    call = f"bioperturb_fused::{name}(flag)"
    return cpp_function(
        name, f"static inline double {name}(const double flag) {{ return {call}; }}"
    )


def install_fused(handle: Any, rule: Any, plan: FusionPlan) -> None:
    """Add the fused calls to a network built without W_rec's summed currents.

    Call after the rule's equations exist (the factors read its variables) and before
    ``rule.install`` (which skips the matrices in ``handle.batched``).
    """
    calls = NeuronGroup(1, "fused_dummy : 1", clock=handle.clock, name="bp_fused")
    ns = handle.namespace
    if plan.currents:
        ns["bp_currents"] = _c_function("bp_currents")
        calls.run_regularly(
            "fused_dummy = bp_currents(0)", when="groups", order=-1, name="bp_fused_currents"
        )
    if plan.batched:
        post, pre = rule.separable_product("W_rec")
        handle.hidden.run_regularly(
            f"fused_a = {post}\nfused_b = {pre}",
            when="start",
            order=4,
            name="bp_fused_factors",
        )
        ns["bp_record"] = _c_function("bp_record")
        ns["bp_accumulate"] = _c_function("bp_accumulate")
        calls.run_regularly(
            "fused_dummy = bp_record(0)", when="start", order=5, name="bp_fused_record"
        )
        calls.run_regularly(
            "fused_dummy = bp_accumulate(0)",
            clock=handle.trial_clock,
            when="end",
            order=-1,
            name="bp_fused_accumulate",
        )
        handle.batched = ("W_rec",)
    if plan.sparse:  # compact weights again after the optimiser step (order 0)
        ns["bp_refresh"] = _c_function("bp_refresh")
        calls.run_regularly(
            "fused_dummy = bp_refresh(0)",
            clock=handle.trial_clock,
            when="end",
            order=2,
            name="bp_fused_refresh",
        )
    handle.extra_objects.append(calls)


def fused_header(handle: Any, rule: Any, plan: FusionPlan, device: Any, twin: bool) -> str:
    """The C++ of the fused calls for the built network ``handle`` (standalone device)."""

    def arr(group: Any, var: str) -> str:
        return "brian::" + device.get_array_name(group.variables[var], access_data=False)

    hidden, syn = handle.hidden, handle.synapses["W_rec"]
    xvar = "rhat" if "rhat" in hidden.variables else "r"
    n_steps = round(float(handle.trial_clock.dt_) / float(handle.clock.dt_))
    code = _HEADER.format(
        N=len(hidden),
        T=n_steps + 1,
        W=arr(syn, "w"),
        PRE=arr(syn, "_synaptic_pre"),
        POST=arr(syn, "_synaptic_post"),
        X=arr(hidden, xvar),
        I=arr(hidden, "I_rec"),
        XN=arr(hidden, f"{xvar}_n") if twin else "",
        IN=arr(hidden, "I_rec_n") if twin else "",
        TW="" if twin else "// ",  # comments out the noisy twin's lines
        SPARSE=int(plan.sparse),
        EXISTS=arr(syn, "exists") if plan.sparse else "",
    )
    if plan.batched:
        batched = _BATCHED.format(
            A=arr(hidden, "fused_a"),
            B=arr(hidden, "fused_b"),
            GATE=arr(hidden, "gate"),
            ACC=arr(syn, "acc"),
            DECAY=repr(rule.trace_decay("W_rec", float(handle.clock.dt_))),
            DENSE="true" if rule.signal == "dense" else "false",
        )
        code = code.replace("// @BATCHED@\n", batched)
    return code


# C++11 (Brian2's standalone flags); str.format fields in braces, C++ braces doubled.
# Shared state lives in function-local statics of inline functions: one instance for the
# whole program, whichever code object includes the header.
_HEADER = r"""// bioperturb: fused W_rec currents, trial-end GEMM accumulation (networks/fused.py)
#ifndef BIOPERTURB_FUSED_H
#define BIOPERTURB_FUSED_H
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>
#include "objects.h"

namespace bioperturb_fused {{
const long N = {N};  // hidden units
const long T = {T};  // steps stored per trial (its steps, + the tape's reset step)
#define BP_SPARSE {SPARSE}  // W_rec sparse: loop over the synapses with exists != 0

inline void fail(const std::string &msg) {{
    std::cerr << "bioperturb (fused W_rec): " << msg << std::endl;
    std::exit(3);
}}

inline std::vector<long> &row_start() {{ static std::vector<long> v(N + 1); return v; }}
inline std::vector<int> &row_post() {{ static std::vector<int> v; return v; }}
inline std::vector<double> &row_w() {{ static std::vector<double> v; return v; }}

#if BP_SPARSE
// Compact copy of the existing weights in row order: the dense array has them spread over
// N^2 entries, which a step would otherwise pull through the caches at every step.
inline double bp_refresh(const double) {{
    const double *w = &{W}[0];
    const long *start = &row_start()[0];
    const int *post = row_post().empty() ? 0 : &row_post()[0];
    std::vector<double> &cw = row_w();
    for (long i = 0; i < N; i++)
        for (long e = start[i]; e < start[i + 1]; e++) cw[e] = w[i * N + post[e]];
    return 0.0;
}}
#endif

// The weights must be dense and pre-major (k = i N + j), as Synapses.connect() makes them.
inline void check_layout() {{
    static bool checked = false;
    if (checked) return;
    if ((long){W}.size() != N * N) fail("W_rec is not all-to-all");
    for (long k = 0; k < N * N; k++)
        if ({PRE}[k] != k / N || {POST}[k] != k % N)
            fail("W_rec synapses are not in pre-major order");
#if BP_SPARSE
    // rows (by presynaptic unit) of the existing synapses' postsynaptic units
    std::vector<long> &start = row_start();
    std::vector<int> &post = row_post();
    post.clear();
    for (long i = 0; i < N; i++) {{
        start[i] = (long)post.size();
        for (long j = 0; j < N; j++)
            if ({EXISTS}[i * N + j] != 0.0) post.push_back((int)j);
    }}
    start[N] = (long)post.size();
    row_w().resize(post.size());
    bp_refresh(0.0);
#endif
    checked = true;
}}

// I_j = sum_i w_ij x_i (and the noisy twin's) in one pass over w, four presynaptic rows at a
// time: w is read once per step for both twins, the outputs loaded and stored N/4 times.
inline double bp_currents(const double) {{
    check_layout();
    const double *__restrict w = &{W}[0];
    const double *__restrict x = {X};
    double *__restrict out = {I};
    {TW}const double *__restrict xn = {XN};
    {TW}double *__restrict outn = {IN};
    for (long j = 0; j < N; j++) out[j] = 0.0;
    {TW}for (long j = 0; j < N; j++) outn[j] = 0.0;
#if BP_SPARSE
    const long *start = &row_start()[0];
    const int *post = row_post().empty() ? 0 : &row_post()[0];
    const double *__restrict cw = row_w().empty() ? 0 : &row_w()[0];
    for (long i = 0; i < N; i++) {{
        const double xi = x[i];
        {TW}const double xni = xn[i];
        for (long e = start[i]; e < start[i + 1]; e++) {{
            const long j = post[e];
            out[j] += cw[e] * xi;
            {TW}outn[j] += cw[e] * xni;
        }}
    }}
    return 0.0;
#endif
    long i = 0;
    for (; i + 4 <= N; i += 4) {{
        const double *__restrict w0 = w + i * N, *__restrict w1 = w0 + N;
        const double *__restrict w2 = w1 + N, *__restrict w3 = w2 + N;
        const double x0 = x[i], x1 = x[i + 1], x2 = x[i + 2], x3 = x[i + 3];
        {TW}const double n0 = xn[i], n1 = xn[i + 1], n2 = xn[i + 2], n3 = xn[i + 3];
        for (long j = 0; j < N; j++) {{
            out[j] += w0[j] * x0 + w1[j] * x1 + w2[j] * x2 + w3[j] * x3;
            {TW}outn[j] += w0[j] * n0 + w1[j] * n1 + w2[j] * n2 + w3[j] * n3;
        }}
    }}
    for (; i < N; i++) {{
        const double *__restrict wi = w + i * N;
        for (long j = 0; j < N; j++) {{
            out[j] += wi[j] * x[i];
            {TW}outn[j] += wi[j] * xn[i];
        }}
    }}
    return 0.0;
}}
// @BATCHED@
}}  // namespace bioperturb_fused
#endif
"""

_BATCHED = r"""
inline std::vector<double> &post_factors() {{ static std::vector<double> v(T * N); return v; }}
inline std::vector<double> &pre_factors() {{ static std::vector<double> v(T * N); return v; }}
inline std::vector<double> &signal() {{ static std::vector<double> v(T); return v; }}
inline std::vector<double> &packed_post() {{ static std::vector<double> v(T * N); return v; }}
inline std::vector<double> &packed_pre() {{ static std::vector<double> v(T * N); return v; }}
inline std::vector<long> &kept_steps() {{ static std::vector<long> v(T); return v; }}
inline long &n_stored() {{ static long n = 0; return n; }}

// Store a_t (post factor), b_t (pre factor) and g_t (the broadcast signal) of this step.
inline double bp_record(const double) {{
    long &s = n_stored();
    if (s >= T) fail("more steps than a trial between two trial ends");
    double *a = &post_factors()[s * N], *b = &pre_factors()[s * N];
    for (long j = 0; j < N; j++) {{
        a[j] = {A}[j];
        b[j] = {B}[j];
    }}
    signal()[s] = {GATE}[0];
    s++;
    return 0.0;
}}

// At the trial's end: acc_ij += sum_s G_s a_sj b_si (networks/fused.py).
inline double bp_accumulate(const double) {{
    const long n = n_stored();
    n_stored() = 0;
    if (n == 0) return 0.0;
    const double decay = {DECAY};
    std::vector<double> &g = signal();
    if ({DENSE}) {{  // G_s = g_s + decay G_(s+1)
        for (long s = n - 2; s >= 0; s--) g[s] += decay * g[s + 1];
    }} else {{  // G_s = g_T decay^(T - s)
        double weight = {GATE}[0];
        for (long s = n - 1; s >= 0; s--) {{
            g[s] = weight;
            weight *= decay;
        }}
    }}
    // keep the steps with G_s != 0, packed for the product: the post factors G_s a_s in
    // panels of 8 units ([j/8][k][8]), the pre factors b_s in panels of 4 ([i/4][k][4])
    const double *a = &post_factors()[0], *b = &pre_factors()[0];
    const long J8 = N - N % 8, I4 = N - N % 4;
    std::vector<double> &pa = packed_post(), &pb = packed_pre();
    std::vector<long> &keep = kept_steps();
    long m = 0;
    for (long s = 0; s < n; s++)
        if (g[s] != 0.0) keep[m++] = s;
    if (m == 0) return 0.0;  // e.g. an evaluation trial
    double *__restrict acc = &{ACC}[0];
#if BP_SPARSE
    // acc_ij += <b_i, G a_j> over the steps, for the existing synapses only, in blocks of
    // 128 steps: factors transposed ([unit][step]) so that each synapse is a contiguous
    // dot product over cached panels
    check_layout();
    const long *start = &row_start()[0];
    const int *post = row_post().empty() ? 0 : &row_post()[0];
    const long KB = 128;
    for (long k0 = 0; k0 < m; k0 += KB) {{
        const long kb = k0 + KB < m ? KB : m - k0;
        for (long k = 0; k < kb; k++) {{
            const long s = keep[k0 + k];
            for (long j = 0; j < N; j++) {{
                pa[j * kb + k] = g[s] * a[s * N + j];
                pb[j * kb + k] = b[s * N + j];
            }}
        }}
        for (long i = 0; i < N; i++) {{
            const double *__restrict bi = &pb[i * kb];
            for (long e = start[i]; e < start[i + 1]; e++) {{
                const long j = post[e];
                const double *__restrict aj = &pa[j * kb];
                double c = 0.0;
                for (long k = 0; k < kb; k++) c += bi[k] * aj[k];
                acc[i * N + j] += c;
            }}
        }}
    }}
    return 0.0;
#endif
    for (long j = 0; j < J8; j += 8)
        for (long k = 0; k < m; k++)
            for (int v = 0; v < 8; v++) pa[j * m + k * 8 + v] = g[keep[k]] * a[keep[k] * N + j + v];
    for (long i = 0; i < I4; i += 4)
        for (long k = 0; k < m; k++)
            for (int u = 0; u < 4; u++) pb[i * m + k * 4 + u] = b[keep[k] * N + i + u];
    // acc (pre-major: acc[i N + j]) += B^T A in 4 x 8 register tiles, steps in blocks of 256
    for (long k0 = 0; k0 < m; k0 += 256) {{
        const long k1 = k0 + 256 < m ? k0 + 256 : m;
        for (long j = 0; j < J8; j += 8)
            for (long i = 0; i < I4; i += 4) {{
                double c[4][8] = {{{{0.0}}}};
                const double *pj = &pa[j * m], *pi = &pb[i * m];
                for (long k = k0; k < k1; k++) {{
                    const double *as = pj + k * 8, *bs = pi + k * 4;
                    for (int u = 0; u < 4; u++)
                        for (int v = 0; v < 8; v++) c[u][v] += bs[u] * as[v];
                }}
                for (int u = 0; u < 4; u++)
                    for (int v = 0; v < 8; v++) acc[(i + u) * N + j + v] += c[u][v];
            }}
    }}
    for (long i = 0; i < N; i++)  // the edges, when N is not a multiple of 4 or 8
        for (long j = (i < I4 ? J8 : 0); j < N; j++) {{
            double c = 0.0;
            for (long k = 0; k < m; k++) c += g[keep[k]] * a[keep[k] * N + j] * b[keep[k] * N + i];
            acc[i * N + j] += c;
        }}
    return 0.0;
}}
"""
