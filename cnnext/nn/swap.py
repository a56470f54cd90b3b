"""swap(model): put cnnext's layers in place of torch.nn's in any model, in place, and back.

    model = torchvision.models.resnet18()
    cnnext.nn.swap(model)                           # Conv2d, pools, BatchNorm now run cnnext's kernels
    model, report = cnnext.nn.swap(model, back=True, report=True)
    print(report)                                   # what was replaced, what was left and why

A replaced module keeps everything the old one had: its Parameter objects (the very same objects,
so an optimizer built before the swap still updates them), buffers, training flag, hooks and any
attribute set on it; only its class changes (to the cnnext drop-in, a subclass of the torch.nn
class, or back). Every torch.nn argument carries over (cnnext's Conv2d takes every padding_mode,
its MaxPool2d return_indices and ceil_mode). A layer is left as it is, with the reason in the
report, when its class is a subclass swap does not know (e.g. LazyConv2d, or a user's subclass
whose forward may differ), when its tensors have a dtype cnnext has no kernels for (float8) or sit
on a device it has no kernels on, when cnnext lacks the layer, or when the cnnext constructor rejects
one of its arguments.

Fusion (fuse=True, the default): inside an nn.Sequential, a BatchNorm1d/2d followed directly by an
nn.ReLU becomes cnnext's BatchNormReLU1d/2d (one pass over memory instead of two; the same values
and gradients, and the same state_dict keys, since the BN keeps its tensors and a ReLU has none),
and the ReLU a FusedReLU placeholder. A pair is left unfused when either layer has forward hooks
(they would see other tensors) or the batch norm is also used elsewhere in the model. swap(back=True)
unfuses such pairs again; a BatchNormReLU layer that is not followed by a FusedReLU is left as it is.
"""
from dataclasses import dataclass, field

import torch
from torch import nn

from ..info import cuda_kernels_compiled

# torch.nn class -> name of the cnnext.nn drop-in
SWAPPABLE = {nn.Conv2d: "Conv2d", nn.MaxPool2d: "MaxPool2d", nn.AvgPool2d: "AvgPool2d",
             nn.AdaptiveAvgPool2d: "AdaptiveAvgPool2d", nn.BatchNorm1d: "BatchNorm1d", nn.BatchNorm2d: "BatchNorm2d"}
# cnnext classes that have no single torch.nn counterpart (swap(back=True) leaves them)
NO_TORCH_TWIN = {"BatchNormReLU1d": "a fused BatchNorm1d + ReLU has no single torch.nn layer",
                 "BatchNormReLU2d": "a fused BatchNorm2d + ReLU has no single torch.nn layer"}
_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


@dataclass
class SwapReport:
    """replaced: (path, old class, new class); left: (path, class, reason); fused: (batch norm path,
    ReLU path) of each pair fused (or, with back=True, unfused)."""
    back: bool = False
    replaced: list = field(default_factory=list)
    left: list = field(default_factory=list)
    fused: list = field(default_factory=list)

    def __str__(self):
        head = "swap back to torch.nn" if self.back else "swap to cnnext.nn"
        verb = "unfused" if self.back else "fused"
        lines = [f"{head}: replaced {len(self.replaced)}, left {len(self.left)}, {verb} {len(self.fused)}"]
        lines += [f"  replaced {p or '<root>'}: {a} -> {b}" for p, a, b in self.replaced]
        lines += [f"  {verb:8s} {b} + {r}: BatchNorm + ReLU {'<-' if self.back else '->'} BatchNormReLU"
                  for b, r in self.fused]
        lines += [f"  left     {p or '<root>'}: {c} ({why})" for p, c, why in self.left]
        return "\n".join(lines)


def _cnnext_classes():
    import cnnext.nn
    ns = vars(cnnext.nn)
    return {tcls: ns[name] for tcls, name in SWAPPABLE.items() if isinstance(ns.get(name), type)}


def _ctor_kwargs(m, base):
    """torch.nn constructor arguments of `base` (a key of SWAPPABLE) that rebuild a module like m
    (on the meta device)."""
    if base is nn.Conv2d:
        return dict(in_channels=m.in_channels, out_channels=m.out_channels, kernel_size=m.kernel_size,
                    stride=m.stride, padding=m.padding, dilation=m.dilation, groups=m.groups,
                    bias=m.bias is not None, padding_mode=m.padding_mode, device="meta")
    if base is nn.MaxPool2d:
        return dict(kernel_size=m.kernel_size, stride=m.stride, padding=m.padding, dilation=m.dilation,
                    return_indices=m.return_indices, ceil_mode=m.ceil_mode)
    if base is nn.AvgPool2d:
        return dict(kernel_size=m.kernel_size, stride=m.stride, padding=m.padding, ceil_mode=m.ceil_mode,
                    count_include_pad=m.count_include_pad, divisor_override=m.divisor_override)
    if base is nn.AdaptiveAvgPool2d:
        return dict(output_size=m.output_size)
    if base in (nn.BatchNorm1d, nn.BatchNorm2d):
        return dict(num_features=m.num_features, eps=m.eps, momentum=m.momentum, affine=m.affine,
                    track_running_stats=m.track_running_stats, device="meta")
    raise TypeError(type(m))


def _tensor_reason(m, cnnext_cuda):
    for name, t in list(m.named_parameters(recurse=False)) + list(m.named_buffers(recurse=False)):
        if t is None or not t.is_floating_point():
            continue
        if t.dtype not in _DTYPES:
            return f"{name} is {t.dtype}; cnnext's kernels take float32, float64, bfloat16 and float16"
        if t.device.type not in ("cpu", "meta") and not (t.device.type == "cuda" and cnnext_cuda):
            return f"{name} is on {t.device}; this build of cnnext has no kernels there"
    return None


def _rebuild(m, new_cls, base):
    """An instance of new_cls sharing m's state: new_cls's constructor validates m's arguments (on the
    meta device, nothing is allocated), then m's attributes (parameters, buffers, hooks, flags) replace
    its own. The inner dicts are shared, so hook handles taken on m still remove their hooks."""
    fresh = new_cls(**_ctor_kwargs(m, base))
    state = dict(fresh.__dict__)
    state.update(m.__dict__)
    new = new_cls.__new__(new_cls)
    new.__dict__.update(state)
    return new


def _hooked(m):
    return bool(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks
                or getattr(m, "_backward_pre_hooks", None))


def _fuse_pairs(model, rep, back, memo_path):
    """Fuse (or, back=True, unfuse) BatchNorm + ReLU pairs inside every nn.Sequential of `model`."""
    import cnnext.nn as cnn

    # cnnext batch norm -> (its fused twin, the torch.nn base both are built from)
    fused_of = {cnn.BatchNorm1d: (cnn.BatchNormReLU1d, nn.BatchNorm1d),
                cnn.BatchNorm2d: (cnn.BatchNormReLU2d, nn.BatchNorm2d)}
    torch_of = {f: base for f, base in fused_of.values()}
    uses = {}
    for _, m in model.named_modules(remove_duplicate=False):
        uses[id(m)] = uses.get(id(m), 0) + 1
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for a, b in zip(names, names[1:]):
            bn, relu = seq._modules[a], seq._modules[b]
            path = memo_path.get(id(seq), "")
            pa, pb = (f"{path}.{a}" if path else a), (f"{path}.{b}" if path else b)
            if not back and type(bn) in fused_of and type(relu) is nn.ReLU:
                if _hooked(bn) or _hooked(relu) or uses[id(bn)] > 1:
                    continue  # the BN's own swap is already reported; the pair stays two layers
                fused, base = fused_of[type(bn)]
                seq._modules[a] = _rebuild(bn, fused, base)
                seq._modules[b] = cnn.FusedReLU(relu.inplace)
                entry = (pa, base.__name__, f"cnnext.nn.{fused.__name__}")
                at = [i for i, x in enumerate(rep.replaced) if x[0] == pa]
                if at:
                    rep.replaced[at[0]] = entry
                else:  # already a cnnext BatchNorm before this call
                    rep.replaced.append(entry)
                rep.fused.append((pa, pb))
            elif back and type(bn) in torch_of and type(relu) is cnn.FusedReLU:
                seq._modules[a] = _rebuild(bn, torch_of[type(bn)], torch_of[type(bn)])
                seq._modules[b] = nn.ReLU(relu.inplace)
                rep.replaced.append((pa, type(bn).__name__, f"torch.nn.{torch_of[type(bn)].__name__}"))
                rep.left = [x for x in rep.left if x[0] != pa]
                rep.fused.append((pa, pb))


def swap(model, back=False, report=False, fuse=True):
    """Replace, in place and recursively, torch.nn.Conv2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d,
    BatchNorm1d and BatchNorm2d by cnnext.nn's drop-ins (back=False) or cnnext's by torch.nn's
    (back=True); with fuse, BatchNorm + ReLU pairs of an nn.Sequential become one fused
    BatchNormReLU layer (back=True: two layers again; see the module docstring). Returns the model
    (a new object only if the root itself was swapped), and with report=True the pair
    (model, SwapReport)."""
    cx = _cnnext_classes()
    cnnext_cuda = cuda_kernels_compiled()
    rep = SwapReport(back=back)
    memo = {}

    def convert(m, path):
        if id(m) in memo:
            return memo[id(m)]
        new = m
        cls = type(m)
        if back:
            target = next((t for t, c in cx.items() if c is cls), None)
            if target is not None:
                new = _rebuild(m, target, target)
                rep.replaced.append((path, cls.__name__, f"torch.nn.{target.__name__}"))
            elif cls.__module__.startswith("cnnext.") and cls.__name__ in NO_TORCH_TWIN:
                rep.left.append((path, cls.__name__, NO_TORCH_TWIN[cls.__name__]))
        else:
            base = next((t for t in SWAPPABLE if isinstance(m, t)), None)
            if base is not None and not cls.__module__.startswith("cnnext."):
                reason = None
                if cls is not base:
                    reason = f"subclass of torch.nn.{base.__name__} that swap does not know"
                elif base not in cx:
                    reason = f"cnnext.nn.{SWAPPABLE[base]} is not in this build"
                else:
                    reason = _tensor_reason(m, cnnext_cuda)
                if reason is None:
                    try:
                        new = _rebuild(m, cx[base], base)
                    except (ValueError, TypeError, NotImplementedError, RuntimeError) as e:
                        reason = f"cnnext.nn.{SWAPPABLE[base]} rejects its arguments: {e}"
                if reason is None:
                    rep.replaced.append((path, cls.__name__, f"cnnext.nn.{cx[base].__name__}"))
                else:
                    rep.left.append((path, cls.__name__, reason))
        memo[id(m)] = new
        for name, child in list(new._modules.items()):
            if child is not None:
                new._modules[name] = convert(child, f"{path}.{name}" if path else name)
        return new

    model = convert(model, "")
    if fuse:
        _fuse_pairs(model, rep, back, {id(m): p for p, m in model.named_modules()})
    return (model, rep) if report else model
