"""Bytecodes executed per function while a callable runs (``sys.settrace``
with opcode events): what callgrind's count of the interpreter's loop
cannot split by function. ``fan_out_opcodes.py`` and ``login_opcodes.py``
take the difference of two runs of it."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Hashable
from types import FrameType
from typing import Any, TypeVar

K = TypeVar("K", bound=Hashable)


def count_opcodes(run: Callable[[], object], key: Callable[[FrameType], K]) -> Counter[K]:
    """Run ``run()`` and count the bytecodes executed, by ``key(frame)``."""
    counts: Counter[K] = Counter()

    def opcode(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "opcode":
            counts[key(frame)] += 1
        return opcode

    def call(frame: FrameType, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        return opcode

    sys.settrace(call)
    try:
        run()
    finally:
        sys.settrace(None)
    return counts
