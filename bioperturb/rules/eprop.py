r"""E-prop (Bellec et al. 2020) on the LIF network: a comparator with a per-neuron signal.

Like RFLO (:mod:`bioperturb.rules.rflo`, whose feedback it shares) each hidden unit gets
its own learning signal, the readout error fed back through B (fixed random, or
``"symmetric"``: B = W_outᵀ)::

    L_i,t = Σ_k B_ik m_t (y_k,t − y*_k,t)

The eligibility of a synapse is the derivative of its neuron's spike with respect to the
weight, kept local: through the membrane's own leak only (no recurrent path). With the
network's Euler step v ← v + a_t dt/τ_m (−v + h + b) (a_t = 0 while refractory) and
h = W r + U u (r, u: the presynaptic synaptic traces)::

    ε_ij ← ε_ij + a_t dt/τ_m (r_j − ε_ij)            (∂v_i/∂W_ij through the leak; r → u for W_in;
                                                      exact: ε + a_t((p22 − 1)ε + p21 r_j))
    ψ_i,t = pseudo-derivative of the spike at the membrane v_i that decided it (0 while
            refractory): "triangle" γ/v_th max(0, 1 − |v − v_th|/v_th) (Bellec et al.), or
            "superspike" 1/(1 + β|v − v_th|)² (the surrogate of bioperturb's BPTT reference)
    e_ij,t = ψ_i,t ε_ij,t                            (eligibility trace)
    ē_ij ← κ ē_ij + e_ij                              (κ = 1 − dt/τ_s: the readout's filter r)
    g_ij = 1/M Σ_t L_i,t ē_ij,t  +  c_reg (ρ_i − ρ*) 1/T Σ_t e_ij,t
    g_kj = 1/M Σ_t m_t (y_k,t − y*_k,t) r_j,t         (readout: exact)

The spike of step t reaches the loss through the readout trace r (y = V r), so the
eligibility is filtered by the readout's own filter before it meets L (Bellec et al.'s
F_κ). After a spike the membrane is set to v_reset; as in the paper (and NEST's e-prop
models) the reset is not differentiated by default and ε carries on; with
``reset_eligibility = true`` ε is set to 0 at the neuron's spike, the exact derivative of
a reset to a constant. Then, with W_rec = 0, symmetric feedback and the SuperSpike
pseudo-derivative, the update equals the surrogate-gradient BPTT reference's gradient
(:mod:`bioperturb.reference.lif`; tested).

Firing-rate regularisation (Bellec et al. 2020, Methods): E_reg = c_reg/2 Σ_i (ρ_i − ρ*)²
with ρ_i the trial's spikes per step of neuron i and ρ* = target_rate · dt; its e-prop
gradient is the second term of g (off by default, c_reg = 0). The BPTT reference does not
include it.

In Brian2: ``psi`` is computed on the hidden group right after the Euler step (before the
threshold and the reset, ``after_groups``) and ``n_spk`` counts spikes after the resets;
each plastic synapse, at the start of the next step, filters ψ·ε into ē, accumulates
L·ē, then moves ε by the coming step's leak.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from brian2 import Equations

from bioperturb.networks.spiking import ACTIVE
from bioperturb.rules.rflo import RFLO, RFLOParams
from bioperturb.schema import param

__all__ = ["EProp", "EPropParams"]

PSEUDO = {
    "triangle": "eprop_gamma / v_th * clip(1 - abs(v - v_th) / v_th, 0, inf)",
    "superspike": "1 / (1 + eprop_beta * abs(v - v_th))**2",
}


@dataclass(frozen=True)
class EPropParams(RFLOParams):
    pseudo_derivative: str = param(
        "triangle",
        choices=tuple(PSEUDO),
        doc="ψ: Bellec et al.'s triangle γ/v_th max(0, 1 − |v − v_th|/v_th), or SuperSpike "
        "1/(1 + β|v − v_th|)² (the BPTT reference's surrogate)",
    )
    gamma: float = param(0.3, positive=True, doc="γ, the triangle's height (Bellec et al.: 0.3)")
    beta: float = param(10.0, positive=True, doc="β, SuperSpike's steepness per threshold unit")
    reset_eligibility: bool = param(
        False,
        doc="set ε to 0 at the neuron's spike (the derivative of the reset); false: "
        "the reset is not differentiated (Bellec et al., NEST)",
    )
    reg_rate: float = param(
        0.0, nonnegative=True, doc="c_reg of the firing-rate regularisation (0: off)"
    )
    target_rate: float = param(
        10.0, unit="hertz", nonnegative=True, doc="target firing rate of the regularisation"
    )


class EProp(RFLO):
    """E-prop for LIF neurons: fed-back error × filtered (pseudo-derivative × leak trace)."""

    name = "eprop"
    Params = EPropParams
    model_kinds = ("lif",)
    meta = {
        "description": "e-prop: per-neuron fed-back readout error x filtered eligibility "
        "(pseudo-derivative x membrane trace); comparator, not a global signal",
        "reference": (
            "Bellec, Scherr, Subramoney, Hajek, Salaj, Legenstein & Maass (2020) A solution "
            "to the learning dilemma for recurrent networks of spiking neurons, "
            "Nat. Commun. 11:3625"
        ),
    }

    def group_equations(self, group: str) -> Equations:
        if group == "hidden":
            return Equations(
                """
                fb : 1
                psi : 1
                n_spk : 1
                nonref = {active} : 1
                spiked = int(abs(t - t_spk - dt) < 0.5 * dt) : 1
                """.format(active=ACTIVE.format(s=""))
            )
        return super().group_equations(group)

    def synapse_equations(self) -> Equations:
        return Equations("acc : 1\nacc_last : 1\neps : 1\nebar : 1\nesum : 1")

    def namespace(self, n_in: int, n_hidden: int, n_out: int) -> dict[str, Any]:
        p = self.params
        return {
            **super().namespace(n_in, n_hidden, n_out),
            "eprop_gamma": p.gamma,
            "eprop_beta": p.beta,
            "eprop_reset": float(p.reset_eligibility),
            "eprop_reg": p.reg_rate,
        }

    def step_code(self, matrix: str) -> str:
        if matrix == "W_out":
            return super().step_code(matrix)
        pre = self.PRESYNAPTIC[matrix]
        return (
            "ebar = lif_ps * ebar + psi_post * eps\n"
            "esum += psi_post * eps\n"
            "acc += minv_at(t) * fb_post * ebar\n"
            "eps = eps * (1 - eprop_reset * spiked_post)\n"
            f"eps += nonref_post * (lif_p22m1 * eps + lif_p21 * {pre})"
        )

    def trial_reset_code(self) -> str:
        return "eps = 0\nebar = 0\nesum = 0"

    def install(self, network: Any) -> list[Any]:
        hidden, trial = network.hidden, network.trial_clock
        n_steps = int(round(float(trial.dt_) / float(network.clock.dt_)))
        network.namespace["eprop_n_inv"] = 1.0 / n_steps
        network.namespace["eprop_target"] = self.params.target_rate * float(network.clock.dt_)
        objs = super().install(network)
        objs.append(
            hidden.run_regularly(
                f"psi = nonref * {PSEUDO[self.params.pseudo_derivative]}",
                when="after_groups",
                order=2,
                name="eprop_psi",
            )
        )
        objs.append(
            hidden.run_regularly(
                "n_spk += int(abs(t_spk - t) < 0.5 * dt)",
                when="after_resets",
                name="eprop_count",
            )
        )
        if self.params.reg_rate > 0:
            rate = "(n_spk_post * eprop_n_inv - eprop_target)"
            reg = f"acc += eprop_reg * {rate} * esum * eprop_n_inv"
            for matrix in self.params.train:
                if matrix != "W_out":
                    objs += self.synapse_operations(network, matrix, end=reg, prefix="eprop_reg")
        objs.append(
            hidden.run_regularly(
                "psi = 0\nn_spk = 0", clock=trial, when="end", order=1, name="eprop_reset"
            )
        )
        return objs
