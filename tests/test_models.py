"""cnnext.models: every d2l CNN built from cnnext's layers computes what its torch.nn twin computes."""
import copy
import importlib

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnnext
from cnnext import models
from conftest import assert_rel_close

RTOL = 1e-4


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # several processes share 2 cores here; one thread each avoids spinning thread pools
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)  # a whole network: fp32 rel err of logits and of every parameter's gradient

# (builder, kwargs, input size, batch): reduced sizes where the architecture allows (AlexNet's
# Linear(6400) needs 224). A batch norm over 2 values per channel is so ill-conditioned that float32
# torch itself is 1e-3 off its float64 gradients, so the batch-norm networks see >= 8 values per channel.
CASES = {
    "lenet": (models.lenet, {}, 28, 2),
    "lenet_bn": (models.lenet_bn, {}, 28, 8),
    "alexnet": (models.alexnet, {}, 224, 1),
    "vgg11": (models.vgg11, {"ratio": 16}, 224, 1),
    "nin": (models.nin, {}, 67, 2),
    "googlenet": (models.googlenet, {}, 32, 2),
    "resnet18": (models.resnet18, {}, 64, 2),
    "densenet": (models.densenet, {}, 64, 2),
}


def twins(build, kwargs, seed=0):
    torch.manual_seed(seed)
    cx = build(layers="cnnext", **kwargs)
    tw = build(layers="torch", **kwargs)
    tw.load_state_dict(cx.state_dict())
    return cx, tw


def fwd_bwd(net, x, seed=1):
    torch.manual_seed(seed)  # same dropout masks in both runs
    net.zero_grad(set_to_none=True)
    out = net(x)
    (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)).sum().backward()
    return out.detach(), {n: p.grad.detach().clone() for n, p in net.named_parameters()}


# modules that end in a functional relu (invisible to an nn.ReLU hook): torchvision's GoogLeNet and
# Inception blocks (conv, batch norm, F.relu)
# (importlib: torchvision.models.googlenet is also the name of the model's builder function)
RELU_OUTPUT = tuple(importlib.import_module(f"torchvision.models.{m}").BasicConv2d for m in ("googlenet", "inception"))


def kinks(net, x, seed=1):
    """Where the network is not differentiable: the sign of every nn.ReLU input (of a fused
    BatchNormReLU, and of a torchvision BasicConv2d, whose forward ends in F.relu: the sign of its output)
    and the argmax of every max-pooling window (computed by torch from the layer's input) in one forward
    pass, in the order the layers ran."""
    picks = []
    fused = (cnnext.nn.BatchNormReLU1d, cnnext.nn.BatchNormReLU2d) + RELU_OUTPUT

    def relu_hook(m, inp, out):
        picks.append(out > 0 if isinstance(m, fused) else inp[0] > 0)

    def pool_hook(m, inp, out):
        picks.append(F.max_pool2d(inp[0].detach(), m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode,
                                  return_indices=True)[1])
    hs = [m.register_forward_hook(pool_hook if isinstance(m, nn.MaxPool2d) else relu_hook)
          for m in net.modules() if isinstance(m, (nn.MaxPool2d, nn.ReLU) + fused)]
    torch.manual_seed(seed)
    with torch.no_grad():
        net(x)
    for h in hs:
        h.remove()
    return picks


def same_kinks(a, b, x):
    return all(torch.equal(u, v) for u, v in zip(kinks(a, x), kinks(b, x)))


def rel_err(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-300)).item()


def compare_grads(g_c, g_t, g_ref, rtol, what):
    """Every gradient of cnnext within rtol of torch's (relative to the largest magnitude), or, where
    the float64 reference shows torch's own float32 gradient to be worse than rtol (an ill-conditioned
    sum such as a batch-norm weight's), within 4x torch's own error. A gradient that is mathematically
    zero (a conv bias in front of a batch norm: 1e-9 of the largest gradient or less in float64) is
    rounding noise in both and must only stay below rtol of the largest gradient."""
    top = max(g.abs().max().item() for g in g_ref.values())
    assert g_c.keys() == g_t.keys()
    for n in g_t:
        if g_ref[n].abs().max().item() <= 1e-9 * top:
            assert g_c[n].abs().max().item() <= rtol * top, f"{what} grad {n}: not ~0"
        else:
            tol = max(rtol, 4 * rel_err(g_t[n], g_ref[n])) if g_ref[n].dtype != g_t[n].dtype else rtol
            assert_rel_close(g_c[n], g_t[n], tol, f"{what} grad {n}")


def assert_twins_agree(cx, tw, shape):
    """fp64: logits, every gradient and the batch-norm buffers within 1e-9. fp32: logits within 1e-4 and
    every gradient as compare_grads says, on an input where float32 rounding flips no kink (a ReLU
    input's sign or a max pool's choice between near-equal values: there the two valid subgradients
    differ by far more than rounding)."""
    torch.manual_seed(2)
    x = torch.randn(shape)
    cx, tw = cx.double(), tw.double()
    out_c, g_c = fwd_bwd(cx, x.double())
    out_t, g_ref = fwd_bwd(tw, x.double())
    assert_rel_close(out_c, out_t, 1e-9, "fp64 logits")
    compare_grads(g_c, g_ref, g_ref, 1e-9, "fp64")
    for (n, b_c), (_, b_t) in zip(cx.named_buffers(), tw.named_buffers()):
        if b_t.is_floating_point():
            assert_rel_close(b_c, b_t, 1e-9, f"buffer {n}")
    cx, tw = cx.float(), tw.float()
    for attempt in range(4):
        if same_kinks(cx, tw, x):
            break
        x = torch.randn(shape)
    else:
        pytest.fail("float32 rounding flipped a ReLU or max-pool decision on 4 inputs")
    if attempt:
        _, g_ref = fwd_bwd(copy.deepcopy(tw).double(), x.double())
    out_c, g_c = fwd_bwd(cx, x)
    out_t, g_t = fwd_bwd(tw, x)
    assert_rel_close(out_c, out_t, RTOL, "fp32 logits")
    compare_grads(g_c, g_t, g_ref, RTOL, "fp32")
    cx.eval(), tw.eval()
    with torch.no_grad():
        assert_rel_close(cx(x), tw(x), RTOL, "eval logits")


def test_torch_variant_shapes():
    """The chapter's shape walk: AlexNet on 1x1x224x224."""
    rows = models.summary(models.alexnet(layers="torch"), (1, 1, 224, 224), print_fn=None)
    shapes = [r[2] for r in rows]
    assert shapes[0] == (1, 96, 54, 54)
    assert shapes[2] == (1, 96, 26, 26)
    assert (1, 256, 5, 5) in shapes and (1, 6400) in shapes
    assert shapes[-1] == (1, 10)
    assert [r[1] for r in rows][:3] == ["Conv2d", "ReLU", "MaxPool2d"]


@pytest.mark.parametrize("name", list(CASES))
def test_torch_variant_builds(name):
    build, kw, size, _ = CASES[name]
    net = build(layers="torch", in_channels=3, num_classes=7, **kw)
    assert net(torch.randn(2, 3, size, size)).shape == (2, 7)


def test_unknown_layers_argument():
    with pytest.raises(ValueError, match="layers"):
        models.lenet(layers="numpy")
    with pytest.raises(ValueError, match="unknown model"):
        models.get_model("lenet7")


@pytest.mark.parametrize("name", list(CASES))
def test_same_module_tree(name):
    build, kw, _, _ = CASES[name]
    cx, tw = twins(build, kw)
    assert list(cx.state_dict()) == list(tw.state_dict())
    assert [n for n, _ in cx.named_modules()] == [n for n, _ in tw.named_modules()]
    kinds = {type(m).__module__.split(".")[0] for m in cx.modules()
             if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.BatchNorm2d,
                               nn.BatchNorm1d)) or type(m).__name__ in models.layers.NAMES}
    assert kinds == {"cnnext"}, f"{name}: layers from {kinds}"
    # every BatchNorm2d -> ReLU of the torch twin is one fused BatchNormReLU2d in the cnnext variant
    pairs = [n for n, m in tw.named_modules() if isinstance(m, nn.ReLU) and _follows_bn(tw, n)]
    fused = [n for n, m in cx.named_modules() if type(m) is cnnext.nn.BatchNormReLU2d]
    assert len(fused) == len(pairs), (fused, pairs)
    assert all(type(dict(cx.named_modules())[n]) is cnnext.nn.FusedReLU for n in pairs)
    assert name not in ("resnet18", "densenet") or fused


def _follows_bn(net, relu_name):
    """Is the ReLU called `relu_name` right after a BatchNorm2d: the previous child of its Sequential, or
    bn1 before relu1 in a Residual block?"""
    parent, _, last = relu_name.rpartition(".")
    mods = dict(net.named_modules())
    names = list(mods[parent]._modules)
    i = names.index(last)
    prev = names[i - 1] if i else None
    if last == "relu1":
        prev = "bn1"
    return prev is not None and isinstance(mods[parent]._modules[prev], nn.BatchNorm2d)


@pytest.mark.parametrize("name", list(CASES))
def test_twin_cpu(name):
    build, kw, size, batch = CASES[name]
    cx, tw = twins(build, kw)
    assert_twins_agree(cx, tw, (batch, 1, size, size))


def _small_pieces(layers):
    torch.manual_seed(0)
    L = models.layer_namespace(layers)
    return {
        "lenet": (models.lenet(layers=layers), (2, 1, 28, 28)),
        "lenet_bn": (models.lenet_bn(layers=layers), (8, 1, 28, 28)),
        "nin_blocks": (nn.Sequential(models.nin_block(1, 4, 5, 2, 1, L), L.MaxPool2d(3, stride=2),
                                     models.nin_block(4, 3, 3, 1, 1, L), L.AdaptiveAvgPool2d((1, 1)),
                                     nn.Flatten()), (2, 1, 15, 15)),
        "inception": (models.Inception(4, 2, (2, 3), (2, 3), 2, layers=layers), (2, 4, 6, 6)),
        "residual": (nn.Sequential(models.Residual(3, 4, use_1x1conv=True, strides=2, layers=layers),
                                   models.Residual(4, 4, layers=layers)), (2, 3, 7, 7)),
        "dense_transition": (nn.Sequential(models.DenseBlock(2, 3, 2, layers=layers),
                                           models.transition_block(7, 3, L)), (2, 3, 6, 6)),
    }


@pytest.mark.parametrize("piece", ["lenet", "lenet_bn", "nin_blocks", "inception", "residual", "dense_transition"])
def test_twin_emulated_cuda(piece):
    cx, shape = _small_pieces("cnnext")[piece]
    tw, _ = _small_pieces("torch")[piece]
    tw.load_state_dict(cx.state_dict())
    x = torch.randn(shape)
    _, g_ref = fwd_bwd(copy.deepcopy(tw).double(), x.double())
    with cnnext.emulate_cuda():
        out_c, g_c = fwd_bwd(cx, x)
    out_t, g_t = fwd_bwd(tw, x)
    assert_rel_close(out_c, out_t, RTOL, "logits")
    compare_grads(g_c, g_t, g_ref, RTOL, "emulated")


@pytest.mark.parametrize("name,size", [("lenet", 28), ("resnet18", 64)])
def test_compile_fullgraph(name, size):
    """torch.compile(fullgraph=True) traces through every cnnext op (their fake kernels) and computes
    what eager torch.nn computes."""
    build = CASES[name][0]
    torch._dynamo.reset()
    cx, tw = twins(build, {})
    torch.manual_seed(3)
    x = torch.randn(2, 1, size, size)
    compiled = torch.compile(cx, fullgraph=True, backend="aot_eager")
    out_c, _ = fwd_bwd(compiled, x)
    g_c = {n: p.grad.detach().clone() for n, p in cx.named_parameters()}
    out_t, g_t = fwd_bwd(tw, x)
    _, g_ref = fwd_bwd(copy.deepcopy(tw).double(), x.double())
    assert_rel_close(out_c, out_t, RTOL, "compiled logits")
    compare_grads(g_c, g_t, g_ref, RTOL, "compiled")


def test_summary_restores_mode_and_returns_rows():
    net = models.lenet_bn(layers="torch")
    net.train()
    rows = models.summary(net, (1, 1, 28, 28), print_fn=None)  # batch 1 through BatchNorm1d: eval mode
    assert net.training
    assert rows[0] == ("0", "Conv2d", (1, 6, 24, 24)) and rows[-1][2] == (1, 10)
    lines = []
    models.summary(models.lenet(layers="torch"), (1, 1, 28, 28), print_fn=lines.append)
    assert lines[0].startswith("Conv2d output shape:") and lines[0].endswith("(1, 6, 28, 28)")
