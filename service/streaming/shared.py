"""``pyspark.Accumulator``, ``AccumulatorParam`` and ``Broadcast``, for code ported as it is.

There are no executors: a job's functions run in the process that owns the batch, so a
broadcast value is the value itself and an accumulator adds in place. With several instances of
a job each process has its own: an accumulator counts what its instance computed, as a driver
would see only its own (docs/semantics.md).
"""

from __future__ import annotations

import threading
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class AccumulatorParam(Generic[T]):
    """How to start an accumulator and how to add to it (PySpark's interface)."""

    def zero(self, value: T) -> T:
        raise NotImplementedError

    def addInPlace(self, value1: T, value2: T) -> T:
        raise NotImplementedError


class _NumberParam(AccumulatorParam[Any]):
    def zero(self, value: Any) -> Any:
        return type(value)(0)

    def addInPlace(self, value1: Any, value2: Any) -> Any:
        return value1 + value2


INT_ACCUMULATOR_PARAM: AccumulatorParam[Any] = _NumberParam()
FLOAT_ACCUMULATOR_PARAM: AccumulatorParam[Any] = _NumberParam()
COMPLEX_ACCUMULATOR_PARAM: AccumulatorParam[Any] = _NumberParam()


class Accumulator(Generic[T]):
    """``sc.accumulator(0)``: ``add`` or ``+=`` in a job's functions, ``value`` to read it."""

    def __init__(self, aid: int, value: T, accum_param: AccumulatorParam[T]) -> None:
        self.aid = aid
        self.accum_param = accum_param
        self._value = value
        self._lock = threading.Lock()

    @property
    def value(self) -> T:
        return self._value

    @value.setter
    def value(self, value: T) -> None:
        self._value = value

    def add(self, term: T) -> None:
        with self._lock:
            self._value = self.accum_param.addInPlace(self._value, term)

    def __iadd__(self, term: T) -> Accumulator[T]:
        self.add(term)
        return self

    def __str__(self) -> str:
        return str(self._value)

    def __repr__(self) -> str:
        return f"Accumulator<id={self.aid}, value={self._value}>"


def param_for(value: Any) -> AccumulatorParam[Any]:
    """PySpark's default parameters: numbers only; anything else needs ``accum_param``."""
    if isinstance(value, bool) or not isinstance(value, int | float | complex):
        raise TypeError(f"No default accumulator param for type {type(value)}: pass accum_param")
    return _NumberParam()


class Broadcast(Generic[T]):
    """``sc.broadcast(v)``: ``value`` is ``v`` (one process holds it already)."""

    def __init__(self, value: T) -> None:
        self._value: T | None = value
        self._destroyed = False

    @property
    def value(self) -> T:
        if self._destroyed:
            raise RuntimeError("Attempted to use broadcast variable after it was destroyed")
        return self._value  # type: ignore[return-value]

    def unpersist(self, blocking: bool = False) -> None:
        return None

    def destroy(self, blocking: bool = False) -> None:
        self._destroyed = True
        self._value = None
