r"""Learning-curve metrics: how fast and how far the loss falls, how often answers are right.

The loss functions take a loss DataArray with a learning dimension, ``eval_trial`` (the
noise-free evaluations, coordinate = number of training trials done) or ``trial`` (the
clean-pass loss of each training trial), and are vectorised over any other dimensions
(``method``, ``seed``, sweep parameters): the result keeps them.  :func:`accuracy` scores
the evaluations of classification tasks (``Task.score == "accuracy"``) from the recorded
outputs, and :func:`trials_to_accuracy` is its sample efficiency; :func:`sequence_accuracy`
scores tasks that answer one symbol per slot (``"sequence"``) and :func:`nrmse`
forecasting tasks (``"nrmse"``).

Sample efficiency is the quantity node-perturbation rules are judged by: their updates
are unbiased but noisy estimates of the gradient, so they need more trials than gradient
descent, increasingly so with the number of perturbed units (Werfel, Xie & Seung 2005).

References
----------
Werfel, J., Xie, X. & Seung, H. S. (2005). Learning curves for stochastic gradient
descent in linear feedforward networks. *Neural Computation* 17(12), 2699–2718.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from bioperturb.metrics._util import result_attrs

__all__ = [
    "trials_to_threshold",
    "time_to_threshold",
    "final_loss",
    "relative_loss",
    "learning_curve_vs_time",
    "accuracy",
    "sequence_accuracy",
    "nrmse",
    "trials_to_accuracy",
]


def _learning_dim(loss: xr.DataArray, dim: str | None) -> str:
    if dim is None:
        for candidate in ("eval_trial", "trial"):
            if candidate in loss.dims:
                dim = candidate
                break
        else:
            raise ValueError(
                f"{loss.name or 'loss'} has dims {loss.dims}: no 'eval_trial' or 'trial'; pass dim="
            )
    if dim not in loss.dims:
        raise ValueError(f"{loss.name or 'loss'} has no dimension {dim!r} (dims: {loss.dims})")
    if loss.sizes[dim] == 0:
        raise ValueError(f"{loss.name or 'loss'} is empty along {dim!r}")
    return dim


def _along_last(loss: xr.DataArray, dim: str) -> tuple[np.ndarray, xr.DataArray]:
    """Values with ``dim`` moved last, and a template of the remaining dims and coords."""
    moved = loss.transpose(..., dim)
    return np.asarray(moved.values, dtype=float), moved.isel({dim: 0}, drop=True)


def _like(values: np.ndarray, template: xr.DataArray, name: str, attrs: dict) -> xr.DataArray:
    return xr.DataArray(values, dims=template.dims, coords=template.coords, name=name, attrs=attrs)


def trials_to_threshold(
    loss: xr.DataArray,
    fraction: float,
    dim: str | None = None,
    *,
    interpolate: bool = False,
) -> xr.DataArray:
    r"""Trials needed for the loss to fall to ``fraction`` of its initial value.

    For a loss curve :math:`L(k_0), L(k_1), \dots` along ``dim`` the result is

    .. math:: k^\ast = \min\{\, k_i : L(k_i) \le f\, L(k_0) \,\}

    (NaN if the loss never gets there, including when :math:`L(k_0)` is NaN).  With
    ``interpolate=True`` the crossing is refined between the last grid point above and
    the first at or below the threshold, linearly in :math:`\log L`,

    .. math:: k^\ast = k_{i-1} + (k_i - k_{i-1})
              \frac{\log f L(k_0) - \log L(k_{i-1})}{\log L(k_i) - \log L(k_{i-1})},

    which is exact for an exponential curve :math:`L = L_0 e^{-k/\tau}`
    (:math:`k^\ast = \tau \ln(1/f)`) and useful when evaluations are sparse; where a
    loss is not positive the grid value is kept.

    Parameters
    ----------
    loss : DataArray
        Loss curve(s), e.g. ``ds.eval_loss``; any dims besides ``dim`` are kept.
    fraction : float
        Threshold as a fraction :math:`f > 0` of the initial loss (0.05: a 95 % reduction).
    dim : str, optional
        Learning dimension; default ``"eval_trial"`` if present, else ``"trial"``.  Its
        coordinate must increase.
    interpolate : bool
        Refine the crossing by log-linear interpolation (see above).

    Returns
    -------
    DataArray
        :math:`k^\ast` in trials (units ``"1"``), with the dims of ``loss`` minus ``dim``.
    """
    dim = _learning_dim(loss, dim)
    if not fraction > 0:
        raise ValueError(f"fraction must be positive, got {fraction!r}")
    values, template = _along_last(loss, dim)
    coord = np.asarray(loss[dim].values, dtype=float)
    if np.any(np.diff(coord) <= 0):
        raise ValueError(f"the {dim!r} coordinate of {loss.name or 'loss'} must increase")
    threshold = fraction * values[..., 0]
    below = values <= threshold[..., None]
    first = below.argmax(axis=-1)
    crossing = coord[first]
    if interpolate:
        crossing = _log_interpolated(values, coord, first, threshold, crossing)
    result = np.where(below.any(axis=-1), crossing, np.nan)
    how = "log-linear interpolation between evaluations" if interpolate else "first grid point"
    attrs = result_attrs(
        "1",
        "trials to threshold",
        f"{dim} at which {loss.name or 'loss'} first falls to <= {fraction:g} x its value at "
        f"the first {dim} ({how}); NaN if never",
    )
    return _like(result, template, "trials_to_threshold", attrs)


def _log_interpolated(
    values: np.ndarray,
    coord: np.ndarray,
    first: np.ndarray,
    threshold: np.ndarray,
    crossing: np.ndarray,
) -> np.ndarray:
    prev = np.maximum(first - 1, 0)
    above = np.take_along_axis(values, prev[..., None], axis=-1)[..., 0]
    at = np.take_along_axis(values, first[..., None], axis=-1)[..., 0]
    usable = (first > 0) & (above > 0) & (at > 0) & (threshold > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = (np.log(threshold) - np.log(above)) / (np.log(at) - np.log(above))
        refined = coord[prev] + share * (coord[first] - coord[prev])
    return np.where(usable, refined, crossing)


def final_loss(loss: xr.DataArray, dim: str | None = None, n_last: int = 1) -> xr.DataArray:
    r"""Mean loss over the last ``n_last`` recorded points along ``dim``.

    .. math:: L_\text{final} = \frac{1}{n}\sum_{i=K-n}^{K-1} L(k_i)

    NaN entries are padding (runs of different length combined into one Dataset) and are
    skipped, so each curve is averaged over its own last ``n_last`` values (fewer if it
    has fewer); a curve with none gives NaN.  Infinite losses (diverged runs) are kept.

    Parameters
    ----------
    loss : DataArray
        Loss curve(s); any dims besides ``dim`` are kept.
    dim : str, optional
        Learning dimension; default ``"eval_trial"`` if present, else ``"trial"``.
    n_last : int
        Number of final points to average (use > 1 for the noisy per-trial ``loss``).

    Returns
    -------
    DataArray
        The final loss, in the units of ``loss``.
    """
    dim = _learning_dim(loss, dim)
    if n_last < 1:
        raise ValueError(f"n_last must be at least 1, got {n_last!r}")
    values, template = _along_last(loss, dim)
    valid = ~np.isnan(values)
    rank_from_end = np.cumsum(valid[..., ::-1], axis=-1)[..., ::-1]
    chosen = valid & (rank_from_end <= n_last)
    total = np.where(chosen, values, 0.0).sum(axis=-1)
    count = chosen.sum(axis=-1)
    mean = np.divide(total, count, out=np.full(total.shape, np.nan), where=count > 0)
    attrs = result_attrs(
        loss.attrs.get("units", "1"),
        f"final {loss.attrs.get('long_name', loss.name or 'loss')}",
        f"mean of the last {n_last} non-NaN values of {loss.name or 'loss'} along {dim}",
    )
    return _like(mean, template, "final_loss", attrs)


def relative_loss(loss: xr.DataArray, dim: str | None = None) -> xr.DataArray:
    r"""Loss relative to its initial value, :math:`L(k) / L(k_0)`.

    Parameters
    ----------
    loss : DataArray
        Loss curve(s); any dims besides ``dim`` are kept.
    dim : str, optional
        Learning dimension; default ``"eval_trial"`` if present, else ``"trial"``.

    Returns
    -------
    DataArray
        Same dims as ``loss``, units ``"1"`` (inf/NaN where the initial loss is 0).
    """
    dim = _learning_dim(loss, dim)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = loss / loss.isel({dim: 0}, drop=True)
    ratio.attrs = result_attrs(
        "1",
        f"relative {loss.attrs.get('long_name', loss.name or 'loss')}",
        f"{loss.name or 'loss'} divided by its value at the first {dim}",
    )
    return ratio.rename("relative_loss")


def learning_curve_vs_time(ds: xr.Dataset) -> xr.Dataset:
    r"""Evaluation loss against the cumulative wall-clock time spent training.

    An evaluation at ``eval_trial`` :math:`= k` comes after training trials
    :math:`0 \dots k-1`, so its elapsed time is

    .. math:: T(k) = \sum_{j<k} w_j,

    with :math:`w_j` the ``wall_time`` of trial :math:`j` (NaN padding counts as 0).
    Evaluations after more trials than were recorded get NaN.  This compares methods by
    compute rather than by trials (a BPTT step costs more than a forward pass).

    Parameters
    ----------
    ds : Dataset
        A run (or several along ``method``/``seed``) with ``eval_loss`` (eval_trial, ...)
        and ``wall_time`` (trial, ...); ``trial`` must be ``0 … n_trials − 1``.

    Returns
    -------
    Dataset
        ``eval_loss`` with the coordinate ``elapsed`` (eval_trial, ...) in seconds.
    """
    missing = [v for v in ("eval_loss", "wall_time") if v not in ds]
    if missing:
        raise ValueError(f"learning_curve_vs_time needs {missing} in the Dataset")
    wall = ds["wall_time"]
    trials = np.asarray(wall["trial"].values)
    if not np.array_equal(trials, np.arange(trials.size)):
        raise ValueError("wall_time's 'trial' coordinate must be 0 … n_trials − 1")
    moved = wall.transpose("trial", ...)
    values = np.asarray(moved.values, dtype=float)
    cumulative = np.concatenate([np.zeros((1, *values.shape[1:])), np.nancumsum(values, axis=0)])
    done = np.asarray(ds["eval_trial"].values, dtype=np.int64)
    recorded = (done >= 0) & (done <= trials.size)
    elapsed_values = cumulative[np.clip(done, 0, trials.size)]
    elapsed_values[~recorded] = np.nan
    rest = moved.isel(trial=0, drop=True)
    elapsed = xr.DataArray(
        elapsed_values,
        dims=("eval_trial", *rest.dims),
        coords={**rest.coords, "eval_trial": ds["eval_trial"]},
        attrs=result_attrs(
            "s",
            "elapsed wall-clock time",
            "sum of wall_time over the training trials done before each evaluation",
        ),
    )
    out = xr.Dataset({"eval_loss": ds["eval_loss"]}, coords={"elapsed": elapsed})
    out.attrs["description"] = "evaluation loss against cumulative training wall time"
    return out


def time_to_threshold(ds: xr.Dataset, fraction: float) -> xr.DataArray:
    r"""Training wall-clock time until ``eval_loss`` falls to ``fraction`` of its initial value.

    The elapsed time :math:`T(k^\ast)` (see :func:`learning_curve_vs_time`) at the
    evaluation :math:`k^\ast` given by :func:`trials_to_threshold` (first grid point, no
    interpolation); NaN if the loss never gets there.

    Parameters
    ----------
    ds : Dataset
        A run (or several along ``method``/``seed``) with ``eval_loss`` and ``wall_time``.
    fraction : float
        Threshold as a fraction of the initial evaluation loss.

    Returns
    -------
    DataArray
        Seconds, with the dims of ``eval_loss`` minus ``eval_trial``.
    """
    trials = trials_to_threshold(ds["eval_loss"], fraction, "eval_trial")
    elapsed = learning_curve_vs_time(ds)["elapsed"]
    at = elapsed.where(elapsed["eval_trial"] == trials).sum("eval_trial", min_count=1)
    return (
        at.drop_vars([c for c in at.coords if c not in at.dims])
        .rename("time_to_threshold")
        .assign_attrs(
            result_attrs(
                "s",
                "training time to threshold",
                f"training wall-clock time before the first evaluation with eval_loss <= "
                f"{fraction:g} x its initial value; NaN if never",
            )
        )
    )


def _masked_mean(da: xr.DataArray, masked: xr.DataArray, n_masked: xr.DataArray) -> xr.DataArray:
    """Mean of ``da`` over the ``masked`` time points (NaN where there are none).

    NaN at a masked time point gives NaN; NaN at another time point is ignored.
    """
    total = xr.where(masked, da, 0.0).sum("time", skipna=False)
    return total / n_masked.where(n_masked > 0)


def _credit(response: np.ndarray, answer: np.ndarray) -> np.ndarray:
    """Score of each (…, output) pair: 1 / #tied largest responses if the answer is among
    them, else 0; NaN if the response has NaN or the answer no unique largest channel."""
    top = response == response.max(axis=-1, keepdims=True)
    best = answer == answer.max(axis=-1, keepdims=True)
    defined = (best.sum(axis=-1) == 1) & ~np.isnan(response).any(axis=-1)
    hits = (top & best).sum(axis=-1)
    return np.where(defined, hits / np.maximum(top.sum(axis=-1), 1), np.nan)


def _scored_variables(ds: xr.Dataset, metric: str, extra: tuple[str, ...] = ()) -> xr.DataArray:
    """The masked recorded time points (``eval_mask`` > 0), after checking that ``ds`` has
    what ``metric`` reads and that some time point is masked."""
    missing = [v for v in ("output_y", "target", "eval_mask", *extra) if v not in ds]
    if missing:
        raise ValueError(f"{metric} needs {missing} in the Dataset (see docs/data-model.md)")
    masked = ds["eval_mask"] > 0
    if not bool(masked.any()):
        raise ValueError(
            f"{metric}: eval_mask is 0 at every recorded time point: no response to score"
        )
    return masked


def accuracy(ds: xr.Dataset) -> xr.Dataset:
    r"""Fraction of the evaluation conditions answered correctly, at every evaluation.

    With :math:`M_c = \{t : m_{ct} > 0\}` the loss-masked recorded time points of
    condition :math:`c` (``eval_mask``), the network's answer is the output channel with
    the largest mean response and the correct answer that of the target,

    .. math:: \hat K_c = \arg\max_k \frac{1}{|M_c|} \sum_{t \in M_c} y_{ctk}, \qquad
              k^\ast_c = \arg\max_k \frac{1}{|M_c|} \sum_{t \in M_c} y^\ast_{ctk},

    and the condition scores :math:`a_c = [k^\ast_c \in \hat K_c] / |\hat K_c|`: 1 for a
    right answer, 0 for a wrong one, and for a tie between :math:`|\hat K_c|` largest
    outputs the expected score of breaking it at random (a constant output scores chance,
    1 / n_outputs).  The accuracy is the mean over conditions (each condition weighs the
    same, whatever its answer),

    .. math:: A = \frac{1}{|C|} \sum_{c \in C} a_c ,

    over the conditions :math:`C` where :math:`a_c` is defined: it is NaN for a condition
    with no masked time point, a target without a unique largest channel (no answer), or
    a NaN mean output (the padding of a shorter run along ``method``; a diverged run).
    Only recorded time points count: ``output_y``, ``target`` and ``eval_mask`` share the
    subsampled ``time`` of ``output.record_dt``.

    Parameters
    ----------
    ds : Dataset
        A run (docs/data-model.md) with ``output_y`` (eval_trial, condition, time,
        output), ``target`` (condition, time, output) and ``eval_mask`` (condition, time);
        any other dims (``method``, ``seed``, sweep parameters) are kept.

    Returns
    -------
    Dataset
        ``eval_accuracy`` (…, eval_trial) and ``eval_accuracy_condition`` (…, eval_trial,
        condition), units ``"1"``.

    Raises
    ------
    ValueError
        If a variable is missing or ``eval_mask`` has no masked time point at all.
    """
    masked = _scored_variables(ds, "accuracy")
    n_masked = masked.sum("time")
    response = _masked_mean(ds["output_y"], masked, n_masked)
    answer = _masked_mean(ds["target"], masked, n_masked)
    per_condition = xr.apply_ufunc(
        _credit, response, answer, input_core_dims=[["output"], ["output"]]
    )
    order = [d for d in ds["output_y"].dims if d not in ("time", "output")]
    per_condition = per_condition.transpose(..., *order)
    counted = per_condition.notnull().sum("condition")
    overall = per_condition.fillna(0.0).sum("condition") / counted.where(counted > 0)
    rule = (
        "output with the largest mean of output_y over the masked time points = that of "
        "target (a tie of k outputs scores 1/k)"
    )
    per_condition.attrs = result_attrs(
        "1",
        "evaluation accuracy per condition",
        f"1 if the {rule}, else 0; NaN without a masked time point or a unique target",
    )
    overall.attrs = result_attrs(
        "1",
        "evaluation accuracy",
        f"mean over the conditions of eval_accuracy_condition (NaN skipped): {rule}",
    )
    return xr.Dataset({"eval_accuracy": overall, "eval_accuracy_condition": per_condition})


def sequence_accuracy(ds: xr.Dataset) -> xr.Dataset:
    r"""Fraction of the symbols of the evaluation sequences recalled correctly.

    For tasks that answer one symbol per slot (``Task.score == "sequence"``, e.g. ``copy``).
    The ``time_slot`` coordinate of ``time`` gives the slot :math:`s` of each recorded time
    point (−1: none). With :math:`M_{cs}` the masked recorded time points of slot s in
    condition c, the answer and the right answer of that slot are

    .. math:: \hat K_{cs} = \arg\max_k \frac{1}{|M_{cs}|} \sum_{t \in M_{cs}} y_{ctk},
              \qquad k^\ast_{cs} = \arg\max_k \frac{1}{|M_{cs}|}
              \sum_{t \in M_{cs}} y^\ast_{ctk},

    scored :math:`a_{cs} = [k^\ast_{cs} \in \hat K_{cs}] / |\hat K_{cs}|` as in
    :func:`accuracy` (a tie of k outputs scores 1/k; NaN without a masked time point, a
    unique target or a finite response).  The sequence accuracy is the mean of
    :math:`a_{cs}` over all defined (condition, slot) pairs, each recalled symbol weighing
    the same; per condition and per slot it is the mean over the slots, resp. conditions.

    Parameters
    ----------
    ds : Dataset
        A run with ``output_y`` (eval_trial, condition, time, output), ``target``
        (condition, time, output), ``eval_mask`` (condition, time) and the coordinate
        ``time_slot`` (time); other dims (``method``, ``seed``, ...) are kept.

    Returns
    -------
    Dataset
        ``eval_sequence_accuracy`` (…, eval_trial), ``eval_sequence_accuracy_condition``
        (…, eval_trial, condition) and ``eval_sequence_accuracy_slot`` (…, eval_trial,
        slot), units ``"1"``.

    Raises
    ------
    ValueError
        If a variable or ``time_slot`` is missing or no slot has a masked time point.
    """
    masked = _scored_variables(ds, "sequence_accuracy", ("time_slot",))
    slot_of = ds["time_slot"]
    n_slots = int(slot_of.max()) + 1
    if not bool((masked & (slot_of >= 0)).any()):
        raise ValueError("sequence_accuracy: no masked time point lies in a slot")
    credits = []
    for slot in range(n_slots):
        in_slot = masked & (slot_of == slot)
        n_in = in_slot.sum("time")
        response = _masked_mean(ds["output_y"], in_slot, n_in)
        answer = _masked_mean(ds["target"], in_slot, n_in)
        credits.append(
            xr.apply_ufunc(_credit, response, answer, input_core_dims=[["output"], ["output"]])
        )
    per_pair = xr.concat(credits, dim=xr.Variable("slot", np.arange(n_slots)))
    order = [d for d in ds["output_y"].dims if d not in ("time", "output")]
    per_pair = per_pair.transpose(..., *order, "slot")

    def mean_over(dims: tuple[str, ...]) -> xr.DataArray:
        counted = per_pair.notnull().sum(dims)
        return per_pair.fillna(0.0).sum(dims) / counted.where(counted > 0)

    rule = (
        "output with the largest mean of output_y over the slot's masked time points = that "
        "of target (a tie of k outputs scores 1/k)"
    )
    overall = mean_over(("condition", "slot"))
    overall.attrs = result_attrs(
        "1",
        "evaluation sequence accuracy",
        f"fraction of recalled symbols right, over conditions x slots (NaN skipped): {rule}",
    )
    per_condition = mean_over(("slot",))
    per_condition.attrs = result_attrs(
        "1",
        "evaluation sequence accuracy per condition",
        f"fraction of the condition's slots right (NaN skipped): {rule}",
    )
    per_slot = mean_over(("condition",))
    per_slot.attrs = result_attrs(
        "1",
        "evaluation sequence accuracy per slot",
        f"fraction of the conditions with the slot right (NaN skipped): {rule}",
    )
    per_slot["slot"].attrs["units"] = "1"
    return xr.Dataset(
        {
            "eval_sequence_accuracy": overall,
            "eval_sequence_accuracy_condition": per_condition,
            "eval_sequence_accuracy_slot": per_slot,
        }
    )


def nrmse(ds: xr.Dataset) -> xr.Dataset:
    r"""Normalised root-mean-square error of the evaluation outputs, at every evaluation.

    For forecasting tasks (``Task.score == "nrmse"``, e.g. ``mackey_glass``).  With
    :math:`M = \{(c, t) : m_{ct} > 0\}` the masked recorded time points of all conditions
    (``eval_mask``) and K outputs,

    .. math:: \mathrm{NRMSE} = \frac{\sqrt{\frac{1}{K|M|} \sum_{(c,t) \in M} \sum_k
              (y_{ctk} - y^\ast_{ctk})^2}}{\sigma^\ast}, \qquad
              \sigma^{\ast 2} = \frac{1}{K|M|} \sum_{(c,t) \in M} \sum_k
              (y^\ast_{ctk} - \bar y^\ast)^2,

    :math:`\bar y^\ast` the mean target over the same points: 0 for a perfect output, 1 for
    the constant output :math:`\bar y^\ast`; lower is better.  NaN at a masked time point
    (padding, a diverged run) gives NaN, NaN elsewhere is ignored; a constant target
    (:math:`\sigma^\ast = 0`) gives NaN.

    Parameters
    ----------
    ds : Dataset
        A run with ``output_y`` (eval_trial, condition, time, output), ``target``
        (condition, time, output) and ``eval_mask`` (condition, time); other dims
        (``method``, ``seed``, ...) are kept.

    Returns
    -------
    Dataset
        ``eval_nrmse`` (…, eval_trial), units ``"1"``.

    Raises
    ------
    ValueError
        If a variable is missing or ``eval_mask`` has no masked time point at all.
    """
    masked = _scored_variables(ds, "nrmse")
    points = ("condition", "time", "output")
    count = masked.sum(("condition", "time")) * ds.sizes["output"]
    error = xr.where(masked, (ds["output_y"] - ds["target"]) ** 2, 0.0).sum(points, skipna=False)
    target = ds["target"]
    mean = xr.where(masked, target, 0.0).sum(points) / count
    spread = np.sqrt(xr.where(masked, (target - mean) ** 2, 0.0).sum(points) / count)
    result = np.sqrt(error / count) / spread.where(spread > 0)
    order = [d for d in ds["output_y"].dims if d not in points]
    result = result.transpose(..., *order)
    result.attrs = result_attrs(
        "1",
        "evaluation NRMSE (lower is better)",
        "sqrt(mean over masked time points, conditions and outputs of (output_y - target)^2)"
        " / standard deviation of target over the same points",
    )
    return xr.Dataset({"eval_nrmse": result})


def trials_to_accuracy(
    accuracy: xr.DataArray, level: float = 0.9, dim: str | None = None
) -> xr.DataArray:
    r"""Trials needed for the accuracy to reach ``level``.

    .. math:: k^\ast = \min\{\, k_i : A(k_i) \ge a \,\}

    (NaN if it never does), on the evaluation grid.

    Parameters
    ----------
    accuracy : DataArray
        Accuracy curve(s), e.g. ``ds.eval_accuracy``; any dims besides ``dim`` are kept.
    level : float
        Accuracy :math:`a` to reach, in (0, 1].
    dim : str, optional
        Learning dimension; default ``"eval_trial"`` if present, else ``"trial"``.  Its
        coordinate must increase.

    Returns
    -------
    DataArray
        :math:`k^\ast` in trials (units ``"1"``), with the dims of ``accuracy`` minus ``dim``.
    """
    dim = _learning_dim(accuracy, dim)
    if not 0 < level <= 1:
        raise ValueError(f"level must lie in (0, 1], got {level!r}")
    values, template = _along_last(accuracy, dim)
    coord = np.asarray(accuracy[dim].values, dtype=float)
    if np.any(np.diff(coord) <= 0):
        raise ValueError(f"the {dim!r} coordinate of {accuracy.name or 'accuracy'} must increase")
    reached = values >= level
    result = np.where(reached.any(axis=-1), coord[reached.argmax(axis=-1)], np.nan)
    attrs = result_attrs(
        "1",
        f"trials to {100 * level:g} % accuracy",
        f"{dim} at which {accuracy.name or 'accuracy'} first reaches >= {level:g}; NaN if never",
    )
    return _like(result, template, "trials_to_accuracy", attrs)
