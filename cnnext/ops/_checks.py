"""Argument checks of the ops' Python entry points, and the C++ checks of their fake kernels.

csrc/ops holds every check of a tensor argument and its message; the fake kernels run those very
checks (cpp_checks) instead of copies. What is checked here is what cannot reach the C++ schema. The
normalisers (`pair` is the one normaliser of (h, w) arguments) accept exactly what
torch.nn.functional accepts for the twin argument -- a Python int (a bool is not one), anything with
__index__ (numpy integers, integer 0-d tensors), a torch.SymInt, or a list/tuple of them (where, as
in torch, bools pass as 0/1) -- and raise a TypeError/ValueError naming the op and the argument for
anything else, before a value reaches the C++ schema (whose own errors name neither). Plain Python
on ints, so torch.compile(fullgraph=True) traces through them.
"""
import operator
import re

import torch
from torch.fx.experimental.symbolic_shapes import guarding_hint_or_throw, has_guarding_hint

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


_CPU_KERNEL = torch._C.DispatchKeySet(torch._C.DispatchKey.CPU)


class _NoHint(Exception):
    pass


def _concrete(v):
    """v with every SymInt replaced by its hint (the value it has in the example being traced)."""
    if isinstance(v, torch.SymInt):
        if not has_guarding_hint(v):
            raise _NoHint  # an unbacked size (data-dependent): no example value to check
        return guarding_hint_or_throw(v)
    if isinstance(v, torch.Tensor):  # a meta tensor of the same (hinted) sizes, strides and dtype
        return torch.empty_strided(_concrete(list(v.shape)), _concrete(list(v.stride())), dtype=v.dtype,
                                   device="meta")
    if isinstance(v, (list, tuple)):
        return [_concrete(x) for x in v]
    return v


def cpp_checks(op, *args):
    """Run the checks of csrc/ops for a fake kernel: the C++ op `op` (an OpOverload) on meta stand-ins
    of `args`, so that its messages are the only ones. The C++ op checks, allocates its outputs and
    returns (csrc/ops/dispatch.h, nothing_to_compute); symbolic sizes are checked at their hints,
    unbacked ones not at all (the C++ op checks them when it runs). Meta stand-ins are all on one
    device, so the device rule of csrc/ops is applied here: every tensor argument on the device of
    `input` (the first tensor argument if there is none), in check_same_device's words."""
    try:
        stand_ins = [_concrete(a) for a in args]
    except _NoHint:
        stand_ins = None
    if stand_ins is not None:
        op.redispatch(_CPU_KERNEL, *stand_ins)
    named = []
    for a, v in zip(op._schema.arguments, args):
        if isinstance(v, torch.Tensor):
            named.append((a.name, v))
        elif isinstance(v, (list, tuple)):
            named += [(f"{a.name}[{i}]", t) for i, t in enumerate(v) if isinstance(t, torch.Tensor)]
    ref_arg, ref = next(((n, t) for n, t in named if n == "input"), named[0])
    for arg, t in named:
        torch._check(t.device == ref.device, lambda: f"{_op_name(op)}: {arg} is on {t.device} but {ref_arg} is on "
                     f"{ref.device}; they must be on the same device")


def _op_name(op):
    """The name csrc/ops' messages use: cnnext::conv2d_backward_weight -> conv2d."""
    return re.sub(r"_(forward|backward(_[a-z]+)?)$", "", op._schema.name.split("::")[1])
