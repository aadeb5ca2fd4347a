r"""The feed-forward stack (``model.kind = "mlp"``) as a rate network with a layered W_rec.

A multi-layer perceptron with L hidden layers of sizes n_1 … n_L is the rate network of
:mod:`bioperturb.networks.rate` with τ = dt and three masks (post × pre):

* W_in reaches only layer 1;
* W_rec holds only the blocks W_l from layer l to layer l + 1;
* W_out reads only layer L;

and, with decorrelation, D_rec is block-diagonal: each layer's lateral weights decorrelate
that layer's own output before the next layer (Dalm et al. 2024's decorrelation at every
layer). At τ = dt the Euler step sets h to its input, so under an input held constant
layer l has settled after l steps and the readout after L: from then on every step is the
static network, and the rules' per-step products are the feed-forward rules' products
(NP's ξ x, ANP's δa x / ‖δa‖²). The perturbation is drawn once per trial and held
(``MLPConfig.hold_noise``), as one noisy forward pass. Everything else — the rules, the
optimisers, the loss group, the BPTT reference (here BP: the masks zero the gradients of
absent synapses) — is the rate network's code, unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["init_mlp_weights", "layer_masks", "layer_slices", "check_settled"]


def layer_slices(layers: tuple[int, ...]) -> list[slice]:
    """The hidden units of each layer (layers are stored in order in one group)."""
    edges = np.concatenate([[0], np.cumsum(layers)]).astype(int)
    return [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def layer_masks(layers: tuple[int, ...], n_in: int, n_out: int) -> dict[str, np.ndarray]:
    """Boolean (post, pre) masks of W_in, W_rec, W_out and the lateral D_rec."""
    sl = layer_slices(layers)
    n = sum(layers)
    w_in = np.zeros((n, n_in), dtype=bool)
    w_in[sl[0]] = True
    w_rec = np.zeros((n, n), dtype=bool)
    for pre, post in zip(sl[:-1], sl[1:], strict=True):
        w_rec[post, pre] = True
    w_out = np.zeros((n_out, n), dtype=bool)
    w_out[:, sl[-1]] = True
    d_rec = np.zeros((n, n), dtype=bool)
    for s in sl:
        d_rec[s, s] = True
    return {"W_in": w_in, "W_rec": w_rec, "W_out": w_out, "D_rec": d_rec}


def init_mlp_weights(
    rng: np.random.Generator, n_in: int, n_hidden: int, n_out: int, model: Any
) -> dict[str, np.ndarray]:
    """Gaussian weights with fan-in scaling: U ~ N(0, s_in²/n_in) into layer 1, W_l ~
    N(0, g²/n_l) from layer l to l + 1, V ~ N(0, s_out²/n_L) from layer L; 0 elsewhere."""
    layers = tuple(model.layers)
    if n_hidden != sum(layers):
        raise ValueError(f"n_hidden = {n_hidden} is not the sum of model.layers = {list(layers)}")
    sl = layer_slices(layers)
    weights = {
        "W_in": np.zeros((n_hidden, n_in)),
        "W_rec": np.zeros((n_hidden, n_hidden)),
        "W_out": np.zeros((n_out, n_hidden)),
    }
    weights["W_in"][sl[0]] = rng.normal(0.0, model.input_scale / np.sqrt(n_in), (layers[0], n_in))
    for pre, post in zip(sl[:-1], sl[1:], strict=True):
        fan_in = pre.stop - pre.start
        block = rng.normal(0.0, model.g / np.sqrt(fan_in), (post.stop - post.start, fan_in))
        weights["W_rec"][post, pre] = block
    weights["W_out"][:, sl[-1]] = rng.normal(
        0.0, model.output_scale / np.sqrt(layers[-1]), (n_out, layers[-1])
    )
    return weights


def check_settled(model: Any, mask: np.ndarray) -> None:
    """ValueError("model.layers: …") unless every loss step of a trial comes after the
    stack has settled: the readout shows the held sample from a trial's (L + 1)-th step on.
    ``mask`` is the loss mask of trials, shape (n_trials, n_steps)."""
    depth = len(model.layers)
    early = np.nonzero(np.asarray(mask)[:, :depth].any(axis=0))[0]
    if early.size:
        raise ValueError(
            f"model.layers: a stack of {depth} hidden layers needs {depth} steps of input "
            f"before the loss counts, but the task's loss starts at step {early[0] + 1} of "
            f"{np.shape(mask)[1]}: lengthen the task's input period before its response"
        )
