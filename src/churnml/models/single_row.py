"""TreeSHAP of one account through LightGBM's single-row "fast" C API.

A ``/predict`` call scores one account with every outcome's model. ``Booster.predict`` is
built for matrices: per call it parses its parameters, builds a predictor in C++ and converts
the array in Python, about 0.1 ms per model on top of the TreeSHAP itself (measured on a
2-core machine, ``benchmarks/README.md``). LightGBM's C API has a path made for this case
(``LGBM_BoosterPredictForMatSingleRowFastInit`` once, then
``LGBM_BoosterPredictForMatSingleRowFast`` per row, public since LightGBM 3.0): the same
predictor, set up once. Its numbers are LightGBM's own, bit for bit (a test checks it against
``Booster.predict(pred_contrib=True)`` on random rows with missing values and categories).

The Python package does not wrap that call, so this module reaches the loaded library
through ``lightgbm.basic._LIB`` and the booster's ``_handle``: two private names that have been
stable since LightGBM 3. When either is missing (a future LightGBM) or the set-up fails,
:class:`SingleRowContrib` says so through ``available`` and the caller keeps
``Booster.predict``; a test fails loudly if the fast path is unavailable with the pinned
LightGBM, so a silent loss of speed is noticed.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any

import numpy as np

# From LightGBM's c_api.h
_C_API_PREDICT_CONTRIB = 3
_C_API_DTYPE_FLOAT64 = 1


def _library() -> Any | None:
    try:
        from lightgbm import basic
    except ImportError:  # pragma: no cover - lightgbm is a dependency
        return None
    lib = getattr(basic, "_LIB", None)
    needed = ("LGBM_BoosterPredictForMatSingleRowFastInit",
              "LGBM_BoosterPredictForMatSingleRowFast", "LGBM_FastConfigFree")
    if lib is None or not all(hasattr(lib, name) for name in needed):
        return None
    return lib


class SingleRowContrib:
    """Exact TreeSHAP contributions (``n_features + 1`` values, the base value last) of one
    row, with the booster's predictor set up once on one thread.

    ``available`` is False when this LightGBM cannot give the fast path; calling it then raises
    ``RuntimeError``. Calls are serialised by a lock (the C++ predictor keeps one row buffer).
    """

    def __init__(self, booster: Any, n_features: int) -> None:
        self._booster = booster  # keeps the booster (and its C++ model) alive
        self._n_features = int(n_features)
        self._lock = threading.Lock()
        self._config = ctypes.c_void_p()
        self._out = np.empty(self._n_features + 1, dtype=np.float64)
        self._out_len = ctypes.c_int64(0)
        lib = _library()
        self._lib: Any = lib
        handle = getattr(booster, "_handle", None)
        self.available = False
        if lib is None or not isinstance(handle, ctypes.c_void_p) or not handle.value:
            return
        status = lib.LGBM_BoosterPredictForMatSingleRowFastInit(
            handle, ctypes.c_int(_C_API_PREDICT_CONTRIB), ctypes.c_int(0), ctypes.c_int(-1),
            ctypes.c_int(_C_API_DTYPE_FLOAT64), ctypes.c_int32(self._n_features),
            ctypes.c_char_p(b"num_threads=1"), ctypes.byref(self._config))
        self.available = status == 0 and bool(self._config.value)
        self._out_ptr = self._out.ctypes.data_as(ctypes.POINTER(ctypes.c_double))

    def serves(self, booster: Any) -> bool:
        """Whether this was set up for ``booster`` (a model whose booster was replaced needs a
        new one)."""
        return booster is self._booster

    def __call__(self, row: np.ndarray) -> np.ndarray:
        """Contributions of ``row`` (a float64 vector of ``n_features`` values) as a
        (1, n_features + 1) array."""
        if not self.available:
            raise RuntimeError("LightGBM's single-row fast path is not available")
        data = np.ascontiguousarray(row, dtype=np.float64)
        if data.shape != (self._n_features,):
            raise ValueError(f"expected {self._n_features} feature values, got shape {data.shape}")
        with self._lock:
            status = self._lib.LGBM_BoosterPredictForMatSingleRowFast(
                self._config, data.ctypes.data_as(ctypes.c_void_p), ctypes.byref(self._out_len),
                self._out_ptr)
            if status != 0 or self._out_len.value != self._n_features + 1:
                raise RuntimeError("LightGBM's single-row prediction failed: "
                                   + self._last_error())
            return self._out.reshape(1, -1).copy()

    def _last_error(self) -> str:
        try:
            return self._lib.LGBM_GetLastError().decode("utf-8", "replace")
        except Exception:  # noqa: BLE001 - only to enrich an error message
            return "unknown error"

    def __del__(self) -> None:
        config = getattr(self, "_config", None)
        lib = getattr(self, "_lib", None)
        if lib is not None and config is not None and config.value:
            lib.LGBM_FastConfigFree(config)
            config.value = None
