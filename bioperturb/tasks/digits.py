"""Sequential digit classification: an 8×8 handwritten digit shown row by row (or pixel by
pixel), then the digit's class.

The images are scikit-learn's copy of the UCI optical recognition of handwritten digits
test set (1,797 images of 8×8 pixels with values 0–16, Alpaydin & Kaynak 1998), read from
the file that ships inside scikit-learn, so nothing is downloaded at run time. It is the
small, offline stand-in for the sequential (and permuted sequential) MNIST task with which
García Fernández, Keemink & van Gerven (2024) compared TD-ANP with BPTT. scikit-learn is an
optional extra (``pip install 'bioperturb[digits]'``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from bioperturb.schema import param
from bioperturb.tasks.base import DataSetTask, load_dataset, whole_steps

__all__ = ["SequentialDigitsTask", "load_digits"]

#: pixels per image side
SIDE = 8
#: largest pixel value of the data set (4×4 blocks of 32×32 binary bitmaps)
PIXEL_MAX = 16.0
N_CLASSES = 10


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 images (n, 8, 8) as floats in [0, 1] and their labels (n,), in the data
    set's order (read-only; :func:`~bioperturb.tasks.base.load_dataset`)."""
    features, labels = load_dataset("digits")
    images = (features / PIXEL_MAX).reshape(labels.size, SIDE, SIDE)
    images.setflags(write=False)
    return images, labels


class SequentialDigitsTask(DataSetTask):
    """Classify an 8×8 digit presented as a sequence, answering after the last element.

    Periods: ``stimulus`` (the image, one row or one pixel per ``step_duration``),
    ``response``. Inputs: during ``stimulus`` the current row (8 channels, ``order =
    "rows"``) or pixel (1 channel, ``"pixels"``; with ``permute`` in a fixed random order),
    scaled to [0, ``input_scale``]; 0 in ``response``. Targets: the one-hot class during
    ``response``, where alone the loss counts. The data set is split once, by
    ``split_seed``, into ``n_eval`` held-out images (the evaluation set, conditions 0 …
    n_eval − 1) and the rest, from which training trials draw with replacement
    (conditions −1). Scored by accuracy (``score = "accuracy"``).
    """

    name: ClassVar[str] = "digits"

    @dataclass(frozen=True)
    class Params:
        order: str = param(
            "rows",
            choices=("rows", "pixels"),
            doc="one time step per image row (8 inputs) or per pixel (1 input)",
        )
        permute: bool = param(
            False,
            doc="present the pixels in a fixed random order (order = 'pixels'; the permuted "
            "sequential task)",
        )
        step_duration: float = param(
            0.01, unit="second", positive=True, doc="duration of each row or pixel"
        )
        response_duration: float = param(
            0.05, unit="second", positive=True, doc="duration of the answer period"
        )
        input_scale: float = param(1.0, positive=True, doc="input of a pixel of value 16")
        n_eval: int = param(
            300, positive=True, doc="held-out images: the evaluation set (not trained on)"
        )
        split_seed: int = param(
            0, nonnegative=True, doc="seed of the train/evaluation split and the permutation"
        )

        def check(self) -> None:
            """Cross-field constraints (raise ``ValueError("key: reason")``)."""
            if self.permute and self.order != "pixels":
                raise ValueError("permute: needs order = 'pixels'")
            if self.n_eval >= 1797:
                raise ValueError(f"n_eval: {self.n_eval} leaves no training images (at most 1796)")

    meta: ClassVar[dict[str, Any]] = {
        "description": (
            "Sequential digit classification: an 8x8 handwritten digit row by row (or pixel "
            "by pixel), then its class on one of 10 outputs."
        ),
        "reference": (
            "Alpaydin E, Kaynak C (1998) Optical recognition of handwritten digits. UCI "
            "Machine Learning Repository, doi:10.24432/C50P49 (scikit-learn's load_digits). "
            "Sequential image classification with perturbation learning: Garcia Fernandez "
            "J, Keemink S, van Gerven M (2024) Front Neurosci 18:1439155."
        ),
        "tags": ["classification", "sequence", "supervised", "multi-class", "data set"],
    }

    def __init__(self, params: SequentialDigitsTask.Params, dt: float):
        super().__init__(params, dt)
        params.check()
        self._per_element = whole_steps(params.step_duration, self.dt, "step_duration")
        n_elements = SIDE if params.order == "rows" else SIDE * SIDE
        stimulus = n_elements * self._per_element
        response = whole_steps(params.response_duration, self.dt, "response_duration")
        self._periods = {"stimulus": (0, stimulus), "response": (stimulus, stimulus + response)}
        self._n_steps = stimulus + response
        images, labels = load_digits()
        split = np.random.default_rng(params.split_seed).permutation(labels.size)
        #: indices (into the data set) of the held-out evaluation images, in their order
        self.eval_index = np.sort(split[: params.n_eval])
        #: indices (into the data set) of the images training trials draw from
        self.train_index = np.sort(split[params.n_eval :])
        #: the flattened image's pixels in presentation order (raster unless permuted)
        self.pixel_order = np.arange(SIDE * SIDE)
        if params.permute:
            shuffle = np.random.default_rng([params.split_seed, 1])
            self.pixel_order = shuffle.permutation(self.pixel_order)
        # (images, elements, inputs): 8 rows of 8 pixels, or 64 pixels of 1
        flat = images.reshape(labels.size, -1)[:, self.pixel_order]
        self._sequence = flat.reshape(labels.size, n_elements, self.n_inputs)
        self._labels = labels

    @property
    def n_inputs(self) -> int:
        return SIDE if self.params.order == "rows" else 1

    @property
    def n_outputs(self) -> int:
        return N_CLASSES

    def _inputs(self, index: np.ndarray) -> np.ndarray:
        inputs = np.zeros((index.size, self._n_steps, self.n_inputs))
        stim = slice(*self._periods["stimulus"])
        # each element held for step_duration
        inputs[:, stim] = np.repeat(self._sequence[index], self._per_element, axis=1)
        return inputs * self.params.input_scale
