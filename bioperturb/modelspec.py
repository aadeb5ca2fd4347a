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

A new kind is a :class:`ModelSpec` subclass with a ``name`` (the ``model.kind`` that
protocols give), registered like tasks and rules: ``@register_model``, an entry point of
the group ``bioperturb.models``, or ``model.kind = "package.module:Class"``. Its config
class needs a ``kind: str`` field; the builtin kinds list themselves as its only choice.
"""

from __future__ import annotations

from typing import Any, ClassVar

from bioperturb.protocol import LIFConfig, MLPConfig, RateConfig
from bioperturb.registry import Registry, decorator_for

__all__ = ["ModelSpec", "MODELS", "model_family", "model_spec", "register_model"]


class ModelSpec:
    """What the package needs to know about one model kind (see the module docstring).

    Subclass it with class attributes and the two static methods; the class itself is the
    spec (it is never instantiated).
    """

    #: the ``model.kind`` of protocols
    name: ClassVar[str]
    #: the dataclass of the ``[model]`` table
    config: ClassVar[type]
    #: the builtin kind whose network it is a variant of (``"rate"``, ``"lif"``): rules run
    #: on the families or kinds they list (``Rule.model_kinds``), and ``compare``, the credit
    #: diagnostics and the fused C++ treat it as that family
    family: ClassVar[str]
    #: engines that run it (``[engine] name``)
    engines: ClassVar[tuple[str, ...]] = ("runtime",)
    #: whether the JAX reference gives its exact loss gradient
    exact_gradient: ClassVar[bool] = False
    #: what the Dataset's ``activity`` variable holds
    activity: ClassVar[str] = "rate r = tanh(h) of sampled units, noise-free evaluation"
    #: one line for ``bioperturb list``
    doc: ClassVar[str] = ""

    @staticmethod
    def init_weights(rng: Any, n_in: int, n_hidden: int, n_out: int, model: Any) -> dict:
        """Initial ``{"W_in", "W_rec", "W_out"}`` (post × pre arrays) from ``rng``."""
        raise NotImplementedError

    @staticmethod
    def build(model: Any, rule: Any, training: Any, tape: Any, weights: dict, **kw: Any) -> Any:
        """The Brian2 network of the runtime engine (``record_dt=``, ``record_units=``)."""
        raise NotImplementedError


class RateModel(ModelSpec):
    name = "rate"
    family = "rate"
    config = RateConfig
    engines = ("runtime", "standalone")
    exact_gradient = True
    doc = "tanh rate units, leaky integration (bioperturb/networks/rate.py)"

    @staticmethod
    def init_weights(*args: Any) -> dict[str, Any]:
        from bioperturb.networks.rate import init_weights

        return init_weights(*args)

    @staticmethod
    def build(*args: Any, **kw: Any) -> Any:
        from bioperturb.networks.rate import build_rate_network

        return build_rate_network(*args, **kw)


class MLPModel(ModelSpec):
    name = "mlp"
    family = "rate"
    config = MLPConfig
    exact_gradient = True
    activity = "rate r = tanh(h) of sampled hidden units (all layers), noise-free evaluation"
    doc = "feed-forward stack of tanh layers, one sample held per trial (networks/mlp.py)"

    @staticmethod
    def init_weights(*args: Any) -> dict[str, Any]:
        from bioperturb.networks.mlp import init_mlp_weights

        return init_mlp_weights(*args)

    @staticmethod
    def build(*args: Any, **kw: Any) -> Any:
        from bioperturb.networks.rate import build_rate_network

        return build_rate_network(*args, **kw)


class LIFModel(ModelSpec):
    name = "lif"
    family = "lif"
    config = LIFConfig
    engines = ("runtime", "standalone")
    activity = (
        "synaptic trace r of sampled neurons (τ_s dr/dt = −r, +1 per spike), noise-free evaluation"
    )
    doc = "leaky integrate-and-fire neurons, exponential synapses (networks/spiking.py)"

    @staticmethod
    def init_weights(*args: Any) -> dict[str, Any]:
        from bioperturb.networks.spiking import init_spiking_weights

        return init_spiking_weights(*args)

    @staticmethod
    def build(*args: Any, **kw: Any) -> Any:
        from bioperturb.networks.spiking import build_spiking_network

        return build_spiking_network(*args, **kw)


#: model kinds by ``model.kind`` (a read-only mapping; see :class:`bioperturb.registry.Registry`)
MODELS = Registry(
    "model", ModelSpec, "bioperturb.models", {"rate": RateModel, "lif": LIFModel, "mlp": MLPModel}
)

register_model = decorator_for(MODELS)


def model_family(kind: str) -> str:
    """The family (``"rate"``, ``"lif"``) of ``model.kind = kind``."""
    return MODELS[kind].family


def model_spec(kind: str) -> type[ModelSpec]:
    """The spec of ``model.kind = kind`` (KeyError lists the known kinds; ValueError for an
    import path that does not give a ModelSpec)."""
    return MODELS[kind]
