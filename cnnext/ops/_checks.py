"""Argument checks shared by the ops' Python entry points and fake kernels (same messages as csrc/ops).

The normalisers accept exactly what torch.nn.functional accepts for the twin argument -- a Python int
(a bool is not one), anything with __index__ (numpy integers, integer 0-d tensors), a torch.SymInt,
or a list/tuple of them (where, as in torch, bools pass as 0/1) -- and raise a TypeError/ValueError
naming the op and the argument for anything else, before a value reaches the C++ schema (whose own
errors name neither). Plain Python on ints, so torch.compile(fullgraph=True) traces through them.
"""
import operator

import torch

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def tensor(op, arg, value):
    """`value` itself, when it is a Tensor."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{op}: {arg} must be a Tensor, got {type(value).__name__}")
    return value


def _int(op, arg, value, got, in_sequence=False):
    if isinstance(value, torch.SymInt):
        return value
    if isinstance(value, bool) and not in_sequence:
        raise TypeError(f"{op}: {arg} must be an int or a pair of ints, got {got!r}")
    if isinstance(value, int):
        v = int(value)
    elif isinstance(value, (float, complex, str, bytes)) or not hasattr(value, "__index__"):
        raise TypeError(f"{op}: {arg} must be an int or a pair of ints, got {got!r}")
    else:
        try:
            v = operator.index(value)
        except TypeError:  # e.g. a float tensor: has __index__ but refuses
            raise TypeError(f"{op}: {arg} must be an int or a pair of ints, got {got!r}") from None
    if not _INT64_MIN <= v <= _INT64_MAX:
        raise ValueError(f"{op}: {arg} must fit in int64, got {got!r}")
    return v


def integer(op, arg, value):
    """A single int (groups, divisor_override): `value` as an int."""
    if isinstance(value, bool) or isinstance(value, (list, tuple)):
        raise TypeError(f"{op}: {arg} must be an int, got {value!r}")
    try:
        return _int(op, arg, value, value)
    except TypeError:
        raise TypeError(f"{op}: {arg} must be an int, got {value!r}") from None


def pair(op, arg, value, lengths=(1, 2)):
    """An int or a list/tuple of len in `lengths` (of ints): [a, b] (a single value repeated)."""
    if isinstance(value, (list, tuple)):
        if len(value) not in lengths:
            raise ValueError(f"{op}: {arg} must be an int or a pair of ints, got {value!r}")
        v = [_int(op, arg, x, value, in_sequence=True) for x in value]
        return [v[0], v[-1]]
    v = _int(op, arg, value, value)
    return [v, v]


def same_device(op, arg, t, ref_arg, ref):
    torch._check(
        t.device == ref.device,
        lambda: f"{op}: {arg} is on {t.device} but {ref_arg} is on {ref.device}; they must be on the same device",
    )
