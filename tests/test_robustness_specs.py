"""The op registry of the robustness tests (issue #7), and a check that it covers every public op.

One `OpSpec` per public op of cnnext.functional, written against the signature of its torch twin:
  * `valid(draw, small)`   -> a Case: random valid arguments (hypothesis draws); `small` keeps shapes
                              tiny enough for the CUDA emulator,
  * `ref`                  the torch reference (same arguments),
  * `grads`                which tensor arguments get gradients (forward + backward are compared),
  * `params`               the scalar/tuple arguments to corrupt, each with the values that are invalid
                              for it (negative, zero, huge, wrong type...),
  * `mutations`            extra op-specific invalid cases (mismatched shapes, ...).
The generic invalid cases (wrong dtype, 'meta' device mismatch, NaN/Inf data, wrong rank, empty
tensors, a non-tensor where a tensor goes) are derived from the tensor arguments of a valid case.
Adding an op = one OpSpec below.  A spec is skipped only while cnnext.functional lacks the name.

test_robustness_props.py (hypothesis, subprocess workers), test_robustness_concurrency.py,
test_robustness_memory.py and test_robustness_large.py all draw their cases from here.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import torch
import torch.nn.functional as F
from hypothesis import strategies as st

import cnnext
import cnnext.functional as CF

# ----------------------------------------------------------------------------- cases


@dataclasses.dataclass
class T:
    """A tensor argument, described (so a failing case prints a reproducible description)."""

    shape: tuple
    dtype: torch.dtype = torch.float32
    seed: int = 0
    layout: str = "contiguous"  # contiguous | channels_last | transposed (non-contiguous) | strided
    device: str = "cpu"
    fill: Any = None  # None: randn; a float: every element; ("nan"|"inf"|"-inf", flat index): one element
    positive: bool = False  # |randn| + 0.5 (running_var)

    def make(self) -> torch.Tensor:
        # the seed is salted with the shape and kind, so two arguments drawn with the same seed (hypothesis
        # likes 0) still differ: x == running_mean would make a valid case a pure cancellation residue
        salt = sum((i + 1) * 7919 * d for i, d in enumerate(self.shape)) + 104729 * self.positive
        g = torch.Generator().manual_seed((self.seed * 1000003 + salt) % 2**62)
        shape = tuple(self.shape)
        if self.layout == "transposed" and len(shape) >= 2:
            base = torch.randn(*shape[:-2], shape[-1], shape[-2], generator=g, dtype=torch.float64).transpose(-1, -2)
        elif self.layout == "strided" and len(shape) >= 1:
            base = torch.randn(*shape[:-1], 2 * shape[-1], generator=g, dtype=torch.float64)[..., ::2]
        else:
            base = torch.randn(shape, generator=g, dtype=torch.float64)
        if self.positive:
            base = base.abs() + 0.5
        if isinstance(self.fill, float):
            base = torch.full_like(base, self.fill)
        elif isinstance(self.fill, tuple) and base.numel():
            v = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}[self.fill[0]]
            base = base.clone()
            base.view(-1)[self.fill[1] % base.numel()] = v
        t = base.to(self.dtype)
        if self.layout == "channels_last" and t.dim() == 4:
            t = t.contiguous(memory_format=torch.channels_last)
        elif self.layout in ("contiguous",):
            t = t.contiguous()
        if self.device != "cpu":
            t = t.to(self.device)
        return t

    def __repr__(self):
        extra = "" if self.layout == "contiguous" else f", {self.layout}"
        extra += "" if self.device == "cpu" else f", device={self.device}"
        extra += "" if self.fill is None else f", fill={self.fill}"
        extra += ", positive=True" if self.positive else ""
        return f"T({tuple(self.shape)}, {str(self.dtype).replace('torch.', '')}, seed={self.seed}{extra})"


def materialize(v):
    if isinstance(v, T):
        return v.make()
    if isinstance(v, list):
        return [materialize(x) for x in v]
    return v


@dataclasses.dataclass
class Case:
    args: list
    kwargs: dict
    expect: tuple = ()  # invalid cases: argument names a good error message may name (any of them)
    what: str = "valid"

    def build(self):
        return [materialize(a) for a in self.args], {k: materialize(v) for k, v in self.kwargs.items()}

    def __repr__(self):
        a = ", ".join(repr(x) for x in self.args)
        k = ", ".join(f"{n}={v!r}" for n, v in self.kwargs.items())
        return f"[{self.what}] ({a}{', ' if a and k else ''}{k})"


@dataclasses.dataclass
class OpSpec:
    name: str
    ref: Callable
    valid: Callable  # (draw, small: bool) -> Case
    grads: tuple = ()  # positions (int) / names (str) of differentiable tensor arguments
    input_names: tuple = ("input",)  # names of the positional tensor arguments, in order
    params: dict = dataclasses.field(default_factory=dict)  # kwarg -> list of invalid values
    mutations: list = dataclasses.field(default_factory=list)  # (draw, Case) -> Case | None
    bit_identical_threads: bool = True  # promised identical results across torch.set_num_threads
    medium: Callable | None = None  # () -> Case: a fixed case of ~64K elements (memory, thread-count tests)
    aliases: tuple = ()  # other op names an error message may use (batch_norm_relu's checks say batch_norm)
    # a function whose output's magnitude is the error scale of the op's output, where the op clips
    # larger terms away: batch_norm_relu's output is measured against batch_norm's (ReLU zeroes the
    # negative terms, and a positive output left from cancelling terms of size 1 cannot be
    # accurate to 1e-5 of itself in float32 -- nor is torch's, except by luck)
    output_scale_ref: Callable | None = None

    impl: Callable | None = None  # stands in for cnnext.functional.<name> (self tests of the checks)

    @property
    def fn(self):
        return self.impl or getattr(CF, self.name, None)

    @property
    def available(self):
        return hasattr(CF, self.name)


class Drawer:
    """What a spec's generators draw from: `HypothesisDrawer` inside @given (shrinking, coverage) or
    `RandomDrawer` (plain, seeded; the concurrency / memory / large tests)."""

    def seed(self):
        return self.int(0, 2**31 - 1)


class HypothesisDrawer(Drawer):
    def __init__(self, data):
        self.data = data

    def int(self, lo, hi):
        return self.data.draw(st.integers(lo, hi))

    def bool(self):
        return self.data.draw(st.booleans())

    def choice(self, seq):
        return self.data.draw(st.sampled_from(list(seq)))

    def float(self, lo, hi):
        return self.data.draw(st.floats(lo, hi))

    def int_list(self, lo, hi, min_size, max_size):
        return self.data.draw(st.lists(st.integers(lo, hi), min_size=min_size, max_size=max_size))


class RandomDrawer(Drawer):
    def __init__(self, seed):
        import random

        self.rnd = random.Random(seed)

    def int(self, lo, hi):
        return self.rnd.randint(lo, hi)

    def bool(self):
        return self.rnd.random() < 0.5

    def choice(self, seq):
        return self.rnd.choice(list(seq))

    def float(self, lo, hi):
        return self.rnd.uniform(lo, hi)

    def int_list(self, lo, hi, min_size, max_size):
        return [self.int(lo, hi) for _ in range(self.int(min_size, max_size))]


def layout(draw, rank):
    choices = ["contiguous", "contiguous", "transposed", "strided"] + (["channels_last"] if rank == 4 else [])
    return draw.choice(choices)


def dtype(draw):
    return draw.choice([torch.float32, torch.float64])


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


# Values that are invalid for an integer size argument (or an absurd but legal one that must then match torch).
HUGE = [2**31, 2**40, 2**62, 2**63 - 1]
BAD_SIZE = [0, -1, -3, *HUGE, 2.5, "3", None, (1, 2, 3), (0, 1), (-1, 2), (2, -1), ()]
BAD_STRIDE = [0, -1, -2, 2**31, 2**62, 2.5, "2", (1, 2, 3), (0, 1), (1, -1)]
BAD_PAD = [-1, -5, 2**31, 2**62, 1.5, "1", (1, 2, 3), (-1, 0)]
BAD_DIL = [0, -1, 2**31, 2**62, 1.5, "1", (1, 2, 3), (0, 1)]

# ----------------------------------------------------------------------------- corr2d


def corr2d_ref(x, k):
    y = F.conv2d(x.reshape(-1, 1, *x.shape[-2:]), k[None, None])
    return y.reshape(*x.shape[:-2], *y.shape[-2:])


def corr2d_valid(draw, small):
    dt = dtype(draw)
    lead = tuple(draw.int_list(1, 2 if small else 3, 0, 2))
    H, W = draw.int(1, 6 if small else 12), draw.int(1, 6 if small else 12)
    kh, kw = draw.int(1, H), draw.int(1, W)
    x = T(lead + (H, W), dt, draw.seed(), layout(draw, len(lead) + 2))
    return Case([x, T((kh, kw), dt, draw.seed(), layout(draw, 2))], {})


def corr2d_kernel_too_big(draw, c):
    x, k = c.args
    H, W = x.shape[-2:]
    return Case([x, T((H + draw.int(1, 3), W), k.dtype, k.seed)], {}, ("kernel",), "kernel larger than input")


def corr2d_kernel_rank(draw, c):
    x, k = c.args
    shape = draw.choice([(3,), (1, 2, 2), ()])
    return Case([x, T(shape, k.dtype, k.seed)], {}, ("kernel",), "kernel rank")


# ----------------------------------------------------------------------------- conv2d


def conv2d_valid(draw, small):
    dt = dtype(draw)
    G = draw.choice([1, 1, 2, 3])
    cg, kg = draw.int(1, 2 if small else 3), draw.int(1, 2 if small else 3)
    C, K = G * cg, G * kg
    R, S = draw.int(1, 3 if small else 4), draw.int(1, 3 if small else 4)
    sh, sw = draw.int(1, 3), draw.int(1, 3)
    dh, dw = draw.int(1, 2), draw.int(1, 2)
    ph, pw = draw.int(0, 2), draw.int(0, 2)
    H = max(1, dh * (R - 1) + 1 - 2 * ph + draw.int(0, 3 if small else 6))
    W = max(1, dw * (S - 1) + 1 - 2 * pw + draw.int(0, 3 if small else 6))
    N = draw.int(1, 2 if small else 3)
    batched = draw.int(0, 9) > 0
    xs = (N, C, H, W) if batched else (C, H, W)
    kw = {
        "stride": (sh, sw) if sh != sw or draw.bool() else sh,
        "padding": (ph, pw) if ph != pw or draw.bool() else ph,
        "dilation": (dh, dw) if dh != dw or draw.bool() else dh,
        "groups": G,
    }
    if draw.int(0, 9) == 0 and sh == sw == 1:
        kw["padding"] = draw.choice(["same", "valid"])
        H, W = max(H, dh * (R - 1) + 1), max(W, dw * (S - 1) + 1)  # 'valid' pads nothing
        xs = (N, C, H, W) if batched else (C, H, W)
    args = [T(xs, dt, draw.seed(), layout(draw, len(xs))), T((K, cg, R, S), dt, draw.seed(), layout(draw, 4))]
    if draw.bool():
        args.append(T((K,), dt, draw.seed()))
    return Case(args, kw)


def conv2d_bad_groups(draw, c):
    x, w = c.args[:2]
    C = x.shape[-3]
    g = draw.choice([0, -1, C + 1, 2**31, 2**62])
    return Case(c.args, {**c.kwargs, "groups": g}, ("groups",), f"groups={g}")


def conv2d_channel_mismatch(draw, c):
    x, w = c.args[:2]
    w2 = T((w.shape[0], w.shape[1] + 1, *w.shape[2:]), w.dtype, w.seed)
    return Case([x, w2, *c.args[2:]], c.kwargs, ("weight", "input", "channels", "groups"), "weight in-channels")


def conv2d_bias_len(draw, c):
    x, w = c.args[:2]
    b = T((w.shape[0] + draw.int(1, 3),), w.dtype, 1)
    return Case([x, w, b], c.kwargs, ("bias",), "bias length")


def conv2d_kernel_too_big(draw, c):
    x, w = c.args[:2]
    H = x.shape[-2]
    w2 = T((w.shape[0], w.shape[1], H + 5, w.shape[3]), w.dtype, w.seed)
    return Case([x, w2, *c.args[2:]], {**c.kwargs, "padding": 0, "dilation": 1}, ("weight", "kernel", "input", "output"),
                "kernel larger than input")


def conv2d_weight_rank(draw, c):
    x, w = c.args[:2]
    return Case([x, T(w.shape[:3], w.dtype, w.seed), *c.args[2:]], c.kwargs, ("weight",), "weight rank")


# ----------------------------------------------------------------------------- pooling


def pool_input(draw, small, min_hw):
    dt = dtype(draw)
    C = draw.int(1, 3 if small else 4)
    H = draw.int(min_hw[0], min_hw[0] + (4 if small else 9))
    W = draw.int(min_hw[1], min_hw[1] + (4 if small else 9))
    shape = (draw.int(1, 2 if small else 3), C, H, W) if draw.int(0, 9) > 0 else (C, H, W)
    return T(shape, dt, draw.seed(), layout(draw, len(shape)))


def max_pool2d_valid(draw, small):
    kh, kw = draw.int(1, 3 if small else 4), draw.int(1, 3 if small else 4)
    dh, dw = draw.int(1, 2), draw.int(1, 2)
    ph, pw = draw.int(0, kh // 2), draw.int(0, kw // 2)
    x = pool_input(draw, small, (max(1, dh * (kh - 1) + 1 - 2 * ph), max(1, dw * (kw - 1) + 1 - 2 * pw)))
    kw_ = {"kernel_size": (kh, kw) if kh != kw or draw.bool() else kh}
    if draw.bool():
        sh, sw = draw.int(1, 4), draw.int(1, 4)
        kw_["stride"] = (sh, sw) if sh != sw else sh
    kw_["padding"] = (ph, pw) if ph != pw else ph
    kw_["dilation"] = (dh, dw) if dh != dw else dh
    kw_["ceil_mode"] = draw.bool()
    kw_["return_indices"] = draw.bool()
    # With dilation, a window can fall entirely in the padding: torch then returns -inf and an index
    # outside the plane, and its backward writes into the *next* plane -- undefined territory, not a
    # valid case.  Such an axis gets dilation 1 (a window of k consecutive rows with pad <= k/2 always
    # holds an input row).
    st = _pair(kw_.get("stride", kw_["kernel_size"]))
    pad, dil = _pair(kw_["padding"]), list(_pair(kw_["dilation"]))
    for ax, (n, k) in enumerate(zip(x.shape[-2:], _pair(kw_["kernel_size"]))):
        out = _pool_out(n, k, st[ax], pad[ax], dil[ax], kw_["ceil_mode"])
        if any(all(not 0 <= o * st[ax] - pad[ax] + i * dil[ax] < n for i in range(k)) for o in range(out)):
            dil[ax] = 1
    kw_["dilation"] = tuple(dil) if dil[0] != dil[1] else dil[0]
    return Case([x], kw_)


def _pool_out(n, k, s, p, d, ceil):
    num = n + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil else 0)
    o = num // s + 1
    if ceil and (o - 1) * s >= n + p:
        o -= 1
    return o


def avg_pool2d_valid(draw, small):
    kh, kw = draw.int(1, 3 if small else 4), draw.int(1, 3 if small else 4)
    ph, pw = draw.int(0, kh // 2), draw.int(0, kw // 2)
    x = pool_input(draw, small, (max(1, kh - 2 * ph), max(1, kw - 2 * pw)))
    kw_ = {"kernel_size": (kh, kw) if kh != kw or draw.bool() else kh}
    if draw.bool():
        sh, sw = draw.int(1, 4), draw.int(1, 4)
        kw_["stride"] = (sh, sw) if sh != sw else sh
    kw_["padding"] = (ph, pw) if ph != pw else ph
    kw_["ceil_mode"] = draw.bool()
    kw_["count_include_pad"] = draw.bool()
    if draw.int(0, 3) == 0:
        kw_["divisor_override"] = draw.int(1, 5)
    return Case([x], kw_)


def adaptive_avg_pool2d_valid(draw, small):
    x = pool_input(draw, small, (1, 1))
    oh, ow = draw.int(1, 5 if small else 9), draw.int(1, 5 if small else 9)
    out = draw.choice([oh, (oh, ow), (oh, None), (None, ow)])
    return Case([x], {"output_size": out})


def pool_pad_too_big(draw, c):
    k = _pair(c.kwargs["kernel_size"])
    p = k[0] // 2 + draw.int(1, 3)
    return Case(c.args, {**c.kwargs, "padding": p}, ("padding", "pad"), f"padding={p} > kernel/2")


def pool_kernel_too_big(draw, c):
    x = c.args[0]
    k = x.shape[-2] + 2 * max(_pair(c.kwargs.get("padding", 0))) + draw.int(1, 4)
    return Case(c.args, {**c.kwargs, "kernel_size": k, "padding": 0}, ("kernel_size", "kernel", "input", "output"),
                f"kernel_size={k} > padded input")


# ----------------------------------------------------------------------------- cat


def cat_valid(draw, small):
    dt = dtype(draw)
    rank = draw.int(1, 4)
    base = [draw.int(1, 3 if small else 5) for _ in range(rank)]
    d = draw.int(-rank, rank - 1)
    n = draw.int(1, 4)
    ts = []
    for _ in range(n):
        s = list(base)
        s[d] = draw.int(0, 3 if small else 5)
        ts.append(T(tuple(s), dt, draw.seed(), layout(draw, rank)))
    return Case([ts], {"dim": d})


def cat_dim_out_of_range(draw, c):
    r = len(c.args[0][0].shape)
    d = draw.choice([r, -r - 1, r + 3, 2**31, 2**63 - 1, -(2**63)])
    return Case(c.args, {"dim": d}, ("dim",), f"dim={d}")


def cat_shape_mismatch(draw, c):
    ts = c.args[0]
    r, d = len(ts[0].shape), c.kwargs["dim"] % len(ts[0].shape)
    if r < 2:
        return None
    other = (d + 1) % r
    s = list(ts[0].shape)
    s[other] += draw.int(1, 2)
    return Case([[*ts, T(tuple(s), ts[0].dtype, 7)]], c.kwargs, ("tensors", "shape", "size"), "sizes differ off dim")


def cat_rank_mismatch(draw, c):
    ts = c.args[0]
    return Case([[*ts, T((*ts[0].shape, 2), ts[0].dtype, 7)]], c.kwargs, ("tensors", "dim", "rank"), "ranks differ")


def cat_dtype_mismatch(draw, c):
    ts = c.args[0]
    other = torch.float64 if ts[0].dtype == torch.float32 else torch.float32
    return Case([[*ts, T(ts[0].shape, other, 7)]], c.kwargs, ("tensors", "dtype"), "dtypes differ")


def cat_device_mismatch(draw, c):
    ts = c.args[0]
    return Case([[*ts, T(ts[0].shape, ts[0].dtype, 7, device="meta")]], c.kwargs, ("tensors", "device"),
                "one tensor on meta")


def cat_empty_list(draw, c):
    return Case([[]], c.kwargs, ("tensors", "empty", "non-empty"), "no tensors")


def cat_not_a_list(draw, c):
    ts = c.args[0]
    v = draw.choice(["tensor", None, 3, "abc"])
    return Case([ts[0] if v == "tensor" else v], c.kwargs, ("tensors",), f"tensors={v!r}")


# ----------------------------------------------------------------------------- batch_norm


def batch_norm_valid(draw, small):
    dt = dtype(draw)
    C = draw.int(1, 3 if small else 6)
    rank = draw.choice([2, 3, 4, 4])
    N = draw.int(1, 3 if small else 4)
    spatial = [draw.int(1, 3 if small else 6) for _ in range(rank - 2)]
    training = draw.bool()
    if training and N * math.prod(spatial) == 1:
        N = 2
    shape = (N, C, *spatial)
    if training and N * math.prod(spatial) == 2:
        # two values per channel: grad_input is a pure cancellation residue (~1e-4 relative in fp32, for
        # torch too), so this degenerate case is checked in float64
        dt = torch.float64
    have_stats = not training or draw.bool()
    args = [T(shape, dt, draw.seed(), layout(draw, rank)),
            T((C,), dt, draw.seed()) if have_stats else None,
            T((C,), dt, draw.seed(), positive=True) if have_stats else None]
    kw = {"training": training, "momentum": draw.choice([0.1, 0.0, 1.0, 0.37]),
          "eps": draw.choice([1e-5, 1e-3, 0.5])}
    if draw.bool():
        kw["weight"] = T((C,), dt, draw.seed())
    if draw.bool():
        kw["bias"] = T((C,), dt, draw.seed())
    return Case(args, kw)


def bn_stat_len(draw, c):
    x, rm, rv = c.args
    C = x.shape[1]
    which = draw.choice(["running_mean", "running_var", "weight", "bias"])
    bad = T((C + draw.int(1, 3),), x.dtype, 3, positive=True)
    if which in ("running_mean", "running_var"):
        args = [x, bad if which == "running_mean" else (rm or T((C,), x.dtype, 4)),
                bad if which == "running_var" else (rv or T((C,), x.dtype, 5, positive=True))]
        return Case(args, c.kwargs, (which,), f"{which} of length C+k")
    return Case(c.args, {**c.kwargs, which: bad}, (which,), f"{which} of length C+k")


def bn_single_value_training(draw, c):
    x, rm, rv = c.args
    C = x.shape[1]
    return Case([T((1, C), x.dtype, x.seed), rm, rv], {**c.kwargs, "training": True},
                ("input", "training", "value"), "training with 1 value per channel")


def bn_no_stats_eval(draw, c):
    x = c.args[0]
    return Case([x, None, None], {**c.kwargs, "training": False}, ("running_mean", "running_var"),
                "eval without running stats")


def bn_negative_var(draw, c):
    x, rm, rv = c.args
    C = x.shape[1]
    return Case([x, rm or T((C,), x.dtype, 4), T((C,), x.dtype, 5, fill=-draw.choice([1.0, 1e-5]))],
                {**c.kwargs, "training": False, "eps": 1e-8}, ("running_var",), "negative running_var (NaN)")


def bn_eps(draw, c):
    e = draw.choice([-1.0, math.nan, math.inf, 0.0])
    return Case(c.args, {**c.kwargs, "eps": e}, ("eps",), f"eps={e}")


def batch_norm_relu_ref(*args, **kwargs):
    return torch.relu(F.batch_norm(*args, **kwargs))


# ----------------------------------------------------------------------------- the registry

SPECS: dict[str, OpSpec] = {}


def register(spec: OpSpec):
    SPECS[spec.name] = spec


POOL_PARAMS = {"kernel_size": BAD_SIZE, "stride": BAD_STRIDE, "padding": BAD_PAD}
F32 = torch.float32
register(OpSpec("corr2d", corr2d_ref, corr2d_valid, grads=(0, 1), input_names=("input", "kernel"),
                medium=lambda: Case([T((4, 3, 64, 64), F32, 1), T((3, 3), F32, 2)], {}),
                mutations=[corr2d_kernel_too_big, corr2d_kernel_rank]))
register(OpSpec("conv2d", F.conv2d, conv2d_valid, grads=(0, 1, 2), input_names=("input", "weight", "bias"),
                bit_identical_threads=False,  # conv2d.h: bit-identical only at a fixed thread count (grad weight)
                medium=lambda: Case([T((2, 8, 32, 32), F32, 1), T((16, 8, 3, 3), F32, 2), T((16,), F32, 3)],
                                    {"padding": 1}),
                params={"stride": BAD_STRIDE, "padding": BAD_PAD + ["full", "SAME"], "dilation": BAD_DIL,
                        "groups": [0, -1, 2**31, 2**62, 1.5, "1"]},
                mutations=[conv2d_bad_groups, conv2d_channel_mismatch, conv2d_bias_len, conv2d_kernel_too_big,
                           conv2d_weight_rank]))
register(OpSpec("max_pool2d", F.max_pool2d, max_pool2d_valid, grads=(0,),
                medium=lambda: Case([T((4, 16, 32, 32), F32, 1)], {"kernel_size": 3, "stride": 2, "padding": 1}),
                params={**POOL_PARAMS, "dilation": BAD_DIL}, mutations=[pool_pad_too_big, pool_kernel_too_big]))
register(OpSpec("avg_pool2d", F.avg_pool2d, avg_pool2d_valid, grads=(0,),
                medium=lambda: Case([T((4, 16, 32, 32), F32, 1)], {"kernel_size": 3, "stride": 2, "padding": 1}),
                params={**POOL_PARAMS, "divisor_override": [0, -1, 2**62, 1.5, "2"]},
                mutations=[pool_pad_too_big, pool_kernel_too_big]))
register(OpSpec("adaptive_avg_pool2d", F.adaptive_avg_pool2d, adaptive_avg_pool2d_valid, grads=(0,),
                medium=lambda: Case([T((4, 16, 32, 32), F32, 1)], {"output_size": (5, 7)}),
                params={"output_size": [0, -1, (0, 2), (2, -1), 2**62, 2.5, "3", (1, 2, 3), (), None]}))
register(OpSpec("cat", torch.cat, cat_valid, grads=("tensors",), input_names=("tensors",),
                medium=lambda: Case([[T((4, 16, 32, 32), F32, 1), T((4, 8, 32, 32), F32, 2)]], {"dim": 1}),
                mutations=[cat_dim_out_of_range, cat_shape_mismatch, cat_rank_mismatch, cat_dtype_mismatch,
                           cat_device_mismatch, cat_empty_list, cat_not_a_list]))
BN = dict(grads=(0, "weight", "bias"), input_names=("input", "running_mean", "running_var"),
          params={"momentum": [math.nan, "0.1", None], "training": ["yes", 2.5]},
          mutations=[bn_stat_len, bn_single_value_training, bn_no_stats_eval, bn_negative_var, bn_eps],
          bit_identical_threads=True,  # batch_norm.cpp: partitions independent of the thread count
          medium=lambda: Case([T((8, 16, 16, 16), F32, 1), T((16,), F32, 2), T((16,), F32, 3, positive=True)],
                              {"weight": T((16,), F32, 4), "bias": T((16,), F32, 5), "training": True}))
register(OpSpec("batch_norm", F.batch_norm, batch_norm_valid, **BN))
register(OpSpec("batch_norm_relu", batch_norm_relu_ref, batch_norm_valid, aliases=("batch_norm",),
                output_scale_ref=F.batch_norm, **BN))


def available_specs():
    return [s for s in SPECS.values() if s.available]


def missing_specs():
    return [n for n, s in SPECS.items() if not s.available]


def public_ops():
    names = getattr(CF, "__all__", None) or [n for n in dir(CF) if not n.startswith("_")]
    return [n for n in names if callable(getattr(CF, n, None))]


def draw_valid(spec, seed, small=False):
    """One valid case of `spec` from an integer seed (outside hypothesis)."""
    return spec.valid(RandomDrawer(seed), small)


# ----------------------------------------------------------------------------- running a case


def float_outputs(out):
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    return [o for o in outs if isinstance(o, torch.Tensor) and o.is_floating_point()]


def grad_leaves(spec, args, kwargs):
    leaves = []
    for g in spec.grads:
        v = args[g] if isinstance(g, int) and g < len(args) else kwargs.get(g) if isinstance(g, str) else None
        if g == "tensors":
            v = args[0]
        for t in v if isinstance(v, list) else [v]:
            if isinstance(t, torch.Tensor) and t.is_floating_point():
                leaves.append(t)
    return leaves


def evaluate(spec, case, emulate=False, fn=None, backward=True):
    """Forward (+ backward with a fixed random grad_output) of `fn` (default: the cnnext op) on `case`.
    Returns (output, grads, in-place state) as detached tensors; the state is every tensor argument
    after the first (batch_norm's running statistics, updated in place in training)."""
    return evaluate_built(spec, *case.build(), emulate=emulate, fn=fn, backward=backward)


def evaluate_built(spec, args, kwargs, emulate=False, fn=None, backward=True):
    """evaluate() on arguments already built (tensors are reused: the memory test's loop)."""
    leaves = grad_leaves(spec, args, kwargs) if backward else []
    for t in leaves:
        t.requires_grad_(True)
    with cnnext.emulate_cuda(emulate):
        out = (fn or spec.fn)(*args, **kwargs)
        fo = [o for o in float_outputs(out) if o.requires_grad]
        grads = []
        if fo and leaves:
            gen = torch.Generator().manual_seed(99)
            gouts = [torch.randn(o.shape, generator=gen, dtype=torch.float64).to(o.dtype) for o in fo]
            grads = list(torch.autograd.grad(fo, leaves, gouts, allow_unused=True))
    det = lambda x: x.detach() if isinstance(x, torch.Tensor) else x  # noqa: E731
    out = tuple(det(o) for o in out) if isinstance(out, (tuple, list)) else det(out)
    state = [a.detach() for a in args[1:] if isinstance(a, torch.Tensor)]
    return out, [det(g) for g in grads], state


def flat_tensors(result):
    """Every tensor of an evaluate() result, in a fixed order."""
    out, grads, state = result
    outs = list(out) if isinstance(out, tuple) else [out]
    return [t for t in outs + grads + state if isinstance(t, torch.Tensor)]


# ----------------------------------------------------------------------------- tests of the registry


def test_every_public_op_has_a_spec():
    """A new public op without a spec here would silently escape every robustness test."""
    missing = [n for n in public_ops() if n not in SPECS]
    assert not missing, f"cnnext.functional ops without a robustness spec in tests/test_robustness_specs.py: {missing}"


def test_plain_draws_give_valid_cases():
    """The hypothesis-free drawing used by the concurrency/memory tests runs every generator; the torch
    reference accepts every valid case (so the generators themselves are right)."""
    for spec in SPECS.values():
        for seed in range(8):
            case = draw_valid(spec, seed, small=seed % 2 == 0)
            args, kwargs = case.build()
            spec.ref(*args, **kwargs)
        args, kwargs = spec.medium().build()
        assert sum(t.numel() for t in args if isinstance(t, torch.Tensor)) + sum(
            t.numel() for a in args if isinstance(a, list) for t in a) >= 16384, spec.name
        spec.ref(*args, **kwargs)
