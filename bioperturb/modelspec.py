"""One :class:`ModelSpec` per model kind: everything the package needs to know about it.

A model kind (``model.kind`` in a protocol: ``"rate"``, ``"lif"``) is looked up once in
:data:`MODELS`; the trainer, the engines, the reference and the validation read what they
need from its spec instead of testing the kind by name:

* ``config``: the dataclass of its ``[model]`` table (validated like every table);
* ``init_weights(rng, n_in, n_hidden, n_out, model)``: the initial W_in, W_rec, W_out;
* ``build(model, rule, training, tape, weights, record_dt=, record_units=)``: the Brian2
  network (runtime engine);
* ``engines``: the engines that run it;
* ``exact_gradient``: whether the JAX reference computes its exact loss gradient (then
  ``output.alignment`` records the rule's cosine with it, and ``compare`` trains BPTT on
  the same network); without one, ``compare`` trains a rate RNN of the same size and a
  surrogate-gradient twin (:mod:`bioperturb.compare`);
* ``activity``: what the Dataset's ``activity`` variable holds.

A new kind is one spec registered with :func:`register_model` (its config class must have
a ``kind`` field whose only choice is the spec's ``kind``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bioperturb.config import MODEL_KINDS, LIFConfig, RateConfig

__all__ = ["ModelSpec", "MODELS", "model_spec", "register_model"]


@dataclass(frozen=True)
class ModelSpec:
    """What the package needs to know about one model kind (see the module docstring)."""

    kind: str
    config: type
    init_weights: Callable[..., dict[str, Any]]
    build: Callable[..., Any]
    engines: tuple[str, ...]
    exact_gradient: bool
    activity: str = "rate r = tanh(h) of sampled units, noise-free evaluation"
    #: one line for ``bioperturb list``
    doc: str = ""


def _rate_init(*args: Any) -> dict[str, Any]:
    from bioperturb.networks.rate import init_weights

    return init_weights(*args)


def _rate_build(*args: Any, **kw: Any) -> Any:
    from bioperturb.networks.rate import build_rate_network

    return build_rate_network(*args, **kw)


def _lif_init(*args: Any) -> dict[str, Any]:
    from bioperturb.networks.spiking import init_spiking_weights

    return init_spiking_weights(*args)


def _lif_build(*args: Any, **kw: Any) -> Any:
    from bioperturb.networks.spiking import build_spiking_network

    return build_spiking_network(*args, **kw)


#: model specs by ``model.kind``
MODELS: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec) -> ModelSpec:
    """Make ``spec`` a model kind that protocols can name (``model.kind``)."""
    known = MODELS.get(spec.kind)
    if known is not None and known != spec:
        raise ValueError(f"model kind '{spec.kind}' is already registered")
    MODELS[spec.kind] = spec
    MODEL_KINDS[spec.kind] = spec.config
    return spec


register_model(
    ModelSpec(
        kind="rate",
        config=RateConfig,
        init_weights=_rate_init,
        build=_rate_build,
        engines=("runtime", "standalone"),
        exact_gradient=True,
        doc="tanh rate units, leaky integration (bioperturb/networks/rate.py)",
    )
)
register_model(
    ModelSpec(
        kind="lif",
        config=LIFConfig,
        init_weights=_lif_init,
        build=_lif_build,
        engines=("runtime",),
        exact_gradient=False,
        activity="synaptic trace r of sampled neurons (τ_s dr/dt = −r, +1 per spike), "
        "noise-free evaluation",
        doc="leaky integrate-and-fire neurons, exponential synapses (networks/spiking.py)",
    )
)


def model_spec(kind: str) -> ModelSpec:
    """The spec of ``model.kind = kind`` (KeyError lists the known kinds)."""
    try:
        return MODELS[kind]
    except KeyError:
        raise KeyError(f"unknown model kind '{kind}' (known: {', '.join(MODELS)})") from None
