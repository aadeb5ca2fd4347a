"""Shared machinery of the perturbation rules: products, eligibility traces, the signal.

Every perturbation rule in bioperturb has the same three-factor form. Per synapse and
per step it forms a local *product* p_ij,t of a postsynaptic perturbation and a
presynaptic activity; an *eligibility trace* filters it in time; a global, broadcast
*signal* M gates the trace into the gradient estimate ``acc``:

    elig_ij ← λ · elig_ij + p_ij,t                     λ = 1 − dt/τ_e  (λ = 0 if τ_e = 0)
    dense signal:      acc_ij += M_t · elig_ij          M_t = c/M_trial · (L̃_t − L_t)
    trial-end signal:  acc_ij  = M_T · elig_ij(T)       M_T = c · (L̃_trial − L_trial)

The discrete trace is the Euler step of τ_e d elig/dt = −elig + τ_e p/dt: τ_e → 0 (or
τ_e = dt) leaves only the current product, and the dense signal then gives exactly the
per-step rules (TD-ANP, per-step NP); τ_e → ∞ with the trial-end signal sums the products
over the trial (the REINFORCE form, Williams 1992; Miconi 2017). The signal is one scalar
per layer computed by the one-unit loss group and broadcast by a summed variable, so no
unit ever sees a per-neuron error.

A rule supplies, per layer, the loss-group expression of its normaliser (``nrm``, e.g.
1/‖δ_t‖²) and, per matrix, the product written with ``nrm_post`` / ``nrm_y_post``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from brian2 import Equations, Synapses

from bioperturb.rules.base import Rule
from bioperturb.schema import param

__all__ = ["PerturbationRule", "TraceParams", "MATRICES", "SCALES", "trace_params_check"]

MATRICES = ("W_in", "W_rec", "W_out")
#: c: √(n_in + N + n_out) as in the RNN paper's code, √N, or 1
SCALES = ("sqrt_total", "sqrt_layer", "one")


def trace_params_check(params: Any) -> None:
    bad = [m for m in params.train if m not in MATRICES]
    if bad:
        raise ValueError(f"train: unknown matrix '{bad[0]}' (known: {', '.join(MATRICES)})")
    if not params.train:
        raise ValueError("train: at least one matrix must be plastic")


@dataclass(frozen=True)
class TraceParams:
    """Parameters of the rules with a trace, a signal and a way to apply the update."""

    scale: str = param(
        "sqrt_total", choices=SCALES, doc="c: √(n_in+N+n_out) (paper code), √N, or 1"
    )
    train: tuple[str, ...] = param(list(MATRICES), doc="plastic weight matrices")
    tau_e: float = param(
        0.0, unit="second", nonnegative=True, doc="eligibility time constant (0: current step)"
    )
    tau_e_out: float | None = param(
        None,
        unit="second",
        nonnegative=True,
        doc="eligibility time constant of the readout W_out (default: tau_e); a linear "
        "readout's effect on the loss is instantaneous, so 0 is exact for it",
    )
    signal: str = param(
        "dense", choices=("dense", "trial_end"), doc="per-step loss difference or one per trial"
    )
    eps: float = param(1e-30, positive=True, doc="ε guarding 0/0 when the perturbation is 0")
    apply: str = param(
        "trial_end",
        choices=("trial_end", "online"),
        doc="apply the summed update at trial end, or an SGD step every step (dense signal)",
    )

    def check(self) -> None:
        trace_params_check(self)
        if self.apply == "online" and self.signal != "dense":
            raise ValueError("apply: 'online' needs signal = 'dense'")


class PerturbationRule(Rule):
    """Base of rules with a product, an eligibility trace and a broadcast loss signal.

    Subclasses define :attr:`PRODUCTS` (matrix → product expression),
    :meth:`normalisers` (layer → loss-group expression) and may add group equations.
    Their ``Params`` must have ``scale``, ``train``, ``tau_e`` and ``signal``.
    """

    PRODUCTS: ClassVar[dict[str, str]] = {}
    #: layer of each matrix's postsynaptic units: which broadcast it reads
    LAYER = {"W_in": "hidden", "W_rec": "hidden", "W_out": "readout"}
    #: (perturbed, baseline) loss of the signal: the noisy and the clean twin by default
    LOSSES: ClassVar[tuple[str, str]] = ("L_n", "L")

    @property
    def tau_e(self) -> float:
        return getattr(self.params, "tau_e", 0.0)

    @property
    def signal(self) -> str:
        return getattr(self.params, "signal", "dense")

    @property
    def online(self) -> bool:
        """Whether weights change every step (SGD inside the step) instead of at trial end."""
        return getattr(self.params, "apply", "trial_end") == "online"

    def normalisers(self) -> dict[str, str]:
        """Loss-group expressions of the per-layer normaliser (names ``nrm_h``/``nrm_y``)."""
        return {"hidden": "1", "readout": "1"}

    # -- equations --------------------------------------------------------------------
    def group_equations(self, group: str) -> Equations:
        nrm = self.normalisers()
        if group == "hidden":
            return Equations("gate : 1\nnrm : 1")
        if group == "readout":
            return Equations("gate_y : 1\nnrm_y : 1")
        if group == "loss":
            pert, base = self.LOSSES
            eqs = f"""
                nrm_hidden = {nrm["hidden"]} : 1
                nrm_readout = {nrm["readout"]} : 1
                {pert}_trial : 1
                {base}_trial : 1
                """
            if self.signal == "dense":
                eqs += f"signal = c_scale * M_inv * ({pert} - {base}) : 1\n"
            else:  # one value per trial, read at the trial's end
                eqs += f"signal = c_scale * ({pert}_trial - {base}_trial) : 1\n"
            return Equations(eqs)
        return Equations("")

    def synapse_equations(self) -> Equations:
        return Equations("acc : 1\nacc_last : 1\nelig : 1")

    def namespace(self, n_in: int, n_hidden: int, n_out: int) -> dict[str, Any]:
        scale = self.params.scale
        c = {
            "sqrt_total": math.sqrt(n_in + n_hidden + n_out),
            "sqrt_layer": math.sqrt(n_hidden),
            "one": 1.0,
        }[scale]
        return {"c_scale": c}

    def trace_decay(self, matrix: str, dt: float) -> float:
        """λ = 1 − dt/τ_e of one matrix's eligibility trace (0 when τ_e = 0)."""
        tau_e, key = self.tau_e, "tau_e"
        tau_out = getattr(self.params, "tau_e_out", None)
        if matrix == "W_out" and tau_out is not None:
            tau_e, key = tau_out, "tau_e_out"
        if 0 < tau_e < dt:
            raise ValueError(f"rule.{key} = {tau_e} s is shorter than dt = {dt} s")
        return 0.0 if tau_e == 0 else 1.0 - dt / tau_e

    def separable_product(self, matrix: str) -> tuple[str, str] | None:
        """(postsynaptic, presynaptic) factors of a matrix's product, if it is one's product.

        The products of ANP/NP are a postsynaptic expression times one presynaptic
        variable (``nrm_post * (h_n_post - h_post) * r_prev_pre`` → ``nrm * (h_n - h)``,
        ``r_prev``), so a trial's accumulation is a sum over steps of outer products,
        which the fused engine (:mod:`bioperturb.engines.standalone.fused`) forms as one matrix
        product at trial end. None when the product is not of that form.
        """
        import sympy
        from brian2.parsing.sympytools import str_to_sympy, sympy_to_str

        expr = str_to_sympy(self.PRODUCTS[matrix])
        pre = [s for s in expr.free_symbols if s.name.endswith("_pre")]
        if len(pre) != 1:
            return None
        post, rest = expr.as_independent(pre[0], as_Add=False)
        if rest != pre[0] or any(not s.name.endswith("_post") for s in post.free_symbols):
            return None
        names = {s: sympy.Symbol(s.name[: -len("_post")]) for s in post.free_symbols}
        return sympy_to_str(post.xreplace(names)), pre[0].name[: -len("_pre")]

    def batchable(self, matrix: str) -> bool:
        """Whether a trial's update of ``matrix`` can be formed at trial end (see above)."""
        return (
            matrix in self.params.train
            and not self.online
            and self.separable_product(matrix) is not None
        )

    def trace_code(self, matrix: str, dt: float) -> tuple[str | None, str | None]:
        """(per-step code, trial-end code) of one matrix; either may be None."""
        decay = self.trace_decay(matrix, dt)
        gate = "gate_post" if self.LAYER[matrix] == "hidden" else "gate_y_post"
        product = self.PRODUCTS[matrix]
        step = f"elig = {decay!r} * elig + {product}"
        if self.signal == "dense":
            code = f"{step}\nacc += {gate} * elig"
            if self.online:  # SGD step right away, on training trials (noise_at = 1) only
                code += f"\nw = w - lr * noise_at(t) * {gate} * elig"
            return code, None
        return step, f"acc += {gate} * elig"

    # -- objects ----------------------------------------------------------------------
    def install(self, network: Any) -> list[Any]:
        """Broadcast the normalisers and the signal; accumulate per synapse."""
        hid, ro, loss = network.hidden, network.readout, network.loss
        dt = float(network.clock.dt_)
        objs = list(self.install_sums(network))
        specs = [
            (
                loss,
                hid,
                "gate_post = signal_pre : 1 (summed)\nnrm_post = nrm_hidden_pre : 1 (summed)",
                "rule_broadcast_hidden",
            ),
            (
                loss,
                ro,
                "gate_y_post = signal_pre : 1 (summed)\nnrm_y_post = nrm_readout_pre : 1 (summed)",
                "rule_broadcast_readout",
            ),
        ]
        for pre, post, model, name in specs:
            syn = Synapses(pre, post, model, clock=network.clock, name=name)
            network.connect_global(syn)
            for var in ("gate", "nrm") if post is hid else ("gate_y", "nrm_y"):
                network.schedule_summed(syn, var, order=3)
            objs.append(syn)
        accumulate, reset = self.trial_loss_code()
        objs.append(loss.run_regularly(accumulate, when="start", order=2, name="rule_trial_loss"))
        objs.append(
            loss.run_regularly(
                reset,
                clock=network.trial_clock,
                when="end",
                order=1,
                name="rule_trial_loss_reset",
            )
        )
        for matrix in self.params.train:
            if matrix in network.batched:
                continue  # accumulated by the fused engine (engines/standalone/fused.py)
            step, end = self.trace_code(matrix, dt)
            objs += self.synapse_operations(network, matrix, step, end, self.trial_reset_code())
        return objs

    def trial_loss_code(self) -> tuple[str, str]:
        """(per-step, trial-end) loss-group code of the trial losses the signal reads.

        By default both losses of :attr:`LOSSES` accumulate their mask-weighted trial
        mean ``<loss>_trial`` (``+= <loss> * M_inv``) and are cleared after each trial.
        """
        pert, base = self.LOSSES
        return (
            f"{pert}_trial += {pert} * M_inv\n{base}_trial += {base} * M_inv",
            f"{pert}_trial = 0\n{base}_trial = 0",
        )

    def install_sums(self, network: Any) -> list[Any]:
        """Extra global sums the normalisers need (e.g. ‖δ‖²); none by default."""
        return []

    def trial_reset_code(self) -> str:
        """Per-synapse code run at every trial boundary, after the optimiser step."""
        return "elig = 0"
