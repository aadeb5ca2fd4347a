"""A run's own copy of the random state that Brian2's runtime code draws from.

Brian2's runtime targets draw ``rand()``/``randn()`` from numpy's *global* legacy
generator: the numpy target directly, the cython target through two C buffers of 20000
pre-drawn numbers that it refills from that generator. Anything else in the process that
touches the global generator (importing jax does, and so may user code or another run in
the same dask worker) would shift a run's noise. :class:`BrianRNG` keeps the state of one
run and installs it only while that run's network is simulating::

    rng = BrianRNG(seed)
    with rng:
        net.run(duration)

Entering is equivalent to ``brian2.seed(seed)`` the first time, so the numbers drawn are
the same; leaving puts back whatever state the process had. The state, including the
buffered numbers (Brian2's own ``Network.store`` saves only the buffer's address, which
is meaningless in another process), converts to arrays for a checkpoint and back.
"""

from __future__ import annotations

import contextlib
import ctypes
from typing import Any

import numpy as np

__all__ = ["BrianRNG"]

_KINDS = ("rand", "randn")


def _buffer_size() -> int:
    try:
        from brian2.codegen.generators.cython_generator import _BUFFER_SIZE
    except ImportError:  # pragma: no cover - layout of another Brian2 version
        return 20000
    return int(_BUFFER_SIZE)


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.restype = None
    libc.free.argtypes = [ctypes.c_void_p]
    return libc


def _device_buffers() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """kind -> (address array, read-position array) of the runtime device, if it has them."""
    import brian2

    device = brian2.get_device()
    out = {}
    for kind in _KINDS:
        pointer = getattr(device, f"{kind}_buffer", None)
        index = getattr(device, f"{kind}_buffer_index", None)
        if pointer is not None and index is not None:
            out[kind] = (pointer, index)
    return out


def _as_arrays(numpy_state: Any, buffers: dict[str, list[int]]) -> dict[str, np.ndarray]:
    """A random state (numpy's legacy state, kind -> [buffer address, read position]) as
    plain arrays: buffer contents, not addresses."""
    kind, keys, pos, has_gauss, gauss = numpy_state
    if kind != "MT19937":  # pragma: no cover - numpy's legacy generator is MT19937
        raise RuntimeError(f"unexpected numpy global RNG {kind}")
    out = {
        "rng/numpy_keys": np.array(keys, dtype=np.uint32),
        "rng/numpy_pos": np.array(pos, dtype=np.int64),
        "rng/numpy_has_gauss": np.array(has_gauss, dtype=np.int64),
        "rng/numpy_gauss": np.array(gauss, dtype=np.float64),
    }
    n = _buffer_size()
    for kind, (address, index) in buffers.items():
        out[f"rng/{kind}_index"] = np.array(index, dtype=np.int64)
        if address and index:  # position 0: the buffer is refilled before its next use
            view = np.ctypeslib.as_array((ctypes.c_double * n).from_address(address))
            out[f"rng/{kind}_buffer"] = view.copy()
    return out


class BrianRNG:
    """numpy's global legacy RNG state plus the cython target's buffers, owned by one run."""

    def __init__(self, seed: int):
        self.numpy_state: Any = np.random.RandomState(seed).get_state(legacy=True)
        #: kind -> [address of the C buffer (0: none yet), read position (0: refill first)]
        self.buffers: dict[str, list[int]] = {kind: [0, 0] for kind in _KINDS}
        self._outer: Any = None

    def __enter__(self) -> BrianRNG:
        if self._outer is not None:
            raise RuntimeError("BrianRNG is already installed")
        device = _device_buffers()
        self._outer = (
            np.random.get_state(legacy=True),  # noqa: NPY002 - Brian2 draws from it
            {k: (int(p[0]), int(i[0])) for k, (p, i) in device.items()},
        )
        np.random.set_state(self.numpy_state)  # noqa: NPY002
        for kind, (pointer, index) in device.items():
            pointer[0], index[0] = self.buffers[kind]
        return self

    def __exit__(self, *exc: Any) -> None:
        outer_numpy, outer_buffers = self._outer
        self._outer = None
        self.numpy_state = np.random.get_state(legacy=True)  # noqa: NPY002
        for kind, (pointer, index) in _device_buffers().items():
            self.buffers[kind] = [int(pointer[0]), int(index[0])]
            pointer[0], index[0] = outer_buffers[kind]
        np.random.set_state(outer_numpy)  # noqa: NPY002

    def __del__(self) -> None:
        # The buffers came from malloc (numpy's default allocator, or ours in
        # from_arrays); Brian2's generated code frees them with free() too.
        if self._outer is None:
            with contextlib.suppress(Exception):
                libc = _libc()
                for address, _ in self.buffers.values():
                    if address:
                        libc.free(address)
                self.buffers = {}

    # ------------------------------------------------------------------ checkpoints
    def to_arrays(self) -> dict[str, np.ndarray]:
        """The state as plain arrays (buffer contents, not addresses); while installed,
        the live state."""
        if self._outer is not None:  # installed: the live state
            device = _device_buffers()
            buffers = {k: [int(p[0]), int(i[0])] for k, (p, i) in device.items()}
            return _as_arrays(np.random.get_state(legacy=True), buffers)  # noqa: NPY002
        return _as_arrays(self.numpy_state, self.buffers)

    def put_back(self, arrays: dict[str, np.ndarray]) -> None:
        """While installed: make the live state the one ``arrays`` (:meth:`to_arrays`)
        describe, so the draws from here on repeat those made after it was taken.

        The buffers Brian2 holds keep their addresses (its code frees and replaces a
        buffer when it refills it, so one taken earlier may be gone): the saved contents
        are copied into them.
        """
        if self._outer is None:
            raise RuntimeError("put_back needs the state installed (inside `with rng:`)")
        saved = BrianRNG.from_arrays(arrays)
        np.random.set_state(saved.numpy_state)  # noqa: NPY002
        n = _buffer_size()
        for kind, (pointer, index) in _device_buffers().items():
            address, position = saved.buffers[kind]
            if not address:  # refill from the (restored) numpy state at the next draw
                index[0] = 0
                continue
            if not int(pointer[0]):  # Brian2 has no buffer yet: take the copy's
                pointer[0], index[0] = address, position
                saved.buffers[kind] = [0, 0]  # now Brian2's to free
                continue
            ctypes.memmove(int(pointer[0]), address, n * ctypes.sizeof(ctypes.c_double))
            index[0] = position

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> BrianRNG:
        """Inverse of :meth:`to_arrays` (the buffers are copied into malloc'ed memory)."""
        rng = cls(0)
        rng.numpy_state = (
            "MT19937",
            np.asarray(arrays["rng/numpy_keys"], dtype=np.uint32),
            int(arrays["rng/numpy_pos"]),
            int(arrays["rng/numpy_has_gauss"]),
            float(arrays["rng/numpy_gauss"]),
        )
        for kind in _KINDS:
            index = int(arrays.get(f"rng/{kind}_index", 0))
            saved = arrays.get(f"rng/{kind}_buffer")
            if saved is None or index == 0:
                rng.buffers[kind] = [0, 0]
                continue
            data = np.ascontiguousarray(saved, dtype=np.float64)
            if data.size != _buffer_size():
                raise ValueError(f"random buffer of {data.size} numbers, expected {_buffer_size()}")
            address = _libc().malloc(data.nbytes)
            if not address:
                raise MemoryError("cannot allocate Brian2's random-number buffer")
            ctypes.memmove(address, data.ctypes.data, data.nbytes)
            rng.buffers[kind] = [address, index]
        return rng
