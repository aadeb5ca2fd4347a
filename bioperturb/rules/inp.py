"""Iterative node perturbation (INP; Dalm, van Gerven & Ahmad 2023): one layer at a time.

In NP every hidden layer is perturbed in the same noisy pass, so the loss difference
L̃ − L that credits layer ℓ's noise ξ_ℓ also carries the effect of every other layer's
noise — variance that the estimate of W_ℓ must average away. INP perturbs one layer per
noisy pass and takes each layer's update from its own pass, so that for small σ
L̃_ℓ − L = ∇_{h_ℓ}L · ξ_ℓ: the directional derivative along ξ_ℓ::

    g_ℓ = (L̃_ℓ − L) ξ_ℓ x_{ℓ−1}ᵀ / σ_ξ²          (only layer ℓ perturbed in pass ℓ)

Here the noisy pass of training trial k perturbs layer ℓ = k mod L (the tape's training
trial index; L hidden layers of a feed-forward stack, ``model.kind = "mlp"``), and the
estimate is multiplied by L, so that its mean over L consecutive trials is the sum of
the per-layer estimates: E[update] is the gradient, as for NP. The paper's form — each
sample run L times, one layer perturbed per run, the update applied once — is
``training.batch = L`` (or a multiple) with ``training.repeat = true``: the batch's mean
of the L scaled estimates is then exactly Σ_ℓ g_ℓ. Our clean twin runs beside every
noisy pass, so a sample costs L clean and L noisy passes (the paper's L + 1).

The readout takes no injected noise here (as in NP): its update is ANP's activity
difference, exact for one linear output. With ``model.decorrelate`` this is DINP.
"""

from __future__ import annotations

from bioperturb.rules.np import NodePerturbation, NPParams

__all__ = ["IterativeNP"]


class IterativeNP(NodePerturbation):
    """NP with the noise of trial k on layer k mod L only, the estimate scaled by L."""

    name = "inp"
    Params = NPParams
    meta = {
        "description": "iterative node perturbation: one layer perturbed per trial (MLP)",
        "reference": (
            "Dalm, van Gerven & Ahmad (2023) Effective learning with node perturbation in "
            "deep neural networks, arXiv:2310.00965"
        ),
    }
    model_kinds = ("mlp",)  # a feed-forward stack: its layers
    standalone = False  # feed-forward stacks run on the runtime engine
    #: reads the tape's training-trial index (``trial_at``)
    per_trial = True
    #: the units of layer k mod L receive the noise of training trial k
    noise_gate = "int(abs((trial_at(t) % n_layers) - layer) < 0.5)"
    #: NP's 1/σ_ξ² times L: the mean over L consecutive trials is Σ_ℓ g_ℓ
    GAIN = "n_layers"
