"""cnnext.nn.swap on models nobody here wrote (torchvision's), and what it keeps."""
import copy

import pytest
import torch
import torchvision
from torch import nn

import cnnext
from cnnext.nn import swap
from conftest import assert_rel_close
from test_models import compare_grads, kinks

RTOL = 1e-4


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # several processes share 2 cores here; one thread each avoids spinning thread pools
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

TV = {
    "resnet18": lambda: torchvision.models.resnet18(weights=None),
    "googlenet": lambda: torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True),
    "densenet121": lambda: torchvision.models.densenet121(weights=None),
    "vgg11": lambda: torchvision.models.vgg11(weights=None),
    "vgg11_bn": lambda: torchvision.models.vgg11_bn(weights=None),
    "alexnet": lambda: torchvision.models.alexnet(weights=None),
}


def run(model, x, seed=1):
    torch.manual_seed(seed)  # the same dropout masks
    model.zero_grad(set_to_none=True)
    out = model(x)
    (out * torch.linspace(-1, 1, out.numel()).reshape(out.shape)).sum().backward()
    return (out.detach(), {n: p.grad.detach().clone() for n, p in model.named_parameters()},
            {n: b.detach().clone() for n, b in model.named_buffers()})

# (batch, H, W): small inputs each accepts (AlexNet needs 63 pixels, VGG's 5 pools 32); one image where
# no batch norm needs a batch
SHAPE = {"vgg11": (1, 32, 32), "vgg11_bn": (2, 32, 32), "alexnet": (1, 64, 64)}


@pytest.mark.parametrize("name", list(TV))
def test_torchvision_same_logits_and_grads(name, monkeypatch):
    """Logits, every gradient and every buffer after swap() equal torch's, on an input where float32
    rounding flips no ReLU / max-pool decision; gradients judged as in test_models.compare_grads
    (against a float64 reference for the batch-norm networks).  GoogLeNet runs its convs on the direct
    algorithm: its batch norms over batch 2 at 4x4 and 2x2 make it so sensitive that the Winograd
    conv's results (within 2x torch's own float32 error against float64, tests/test_conv2d_winograd.py,
    but rounded differently from torch's) flipped a ReLU on 20 of 20 random inputs (measured
    2026-12-04), and a flipped ReLU changes the subgradient itself."""
    if name == "googlenet":
        monkeypatch.setenv("CNNEXT_CONV2D_WINOGRAD", "0")
    torch.manual_seed(0)
    model = TV[name]()
    state = copy.deepcopy(model.state_dict())
    has_bn = any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    for attempt in range(4):
        b, h, w = SHAPE.get(name, (2, 64, 64))
        x = torch.randn(b, 3, h, w)
        k_t = kinks(model, x)
        swap(model)
        k_c = kinks(model, x)
        swap(model, back=True)
        model.load_state_dict(state)
        if all(torch.equal(a, b) for a, b in zip(k_t, k_c)):
            break
    else:
        pytest.fail("float32 rounding flipped a ReLU or max-pool decision on 4 inputs")
    out_t, g_t, b_t = run(model, x)
    model.load_state_dict(state)
    g_ref = run(copy.deepcopy(model).double(), x.double())[1] if has_bn else g_t
    params = dict(model.named_parameters())
    model, rep = swap(model, report=True)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(type(m) is cnnext.nn.Conv2d for m in convs), str(rep)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(type(m) in (cnnext.nn.BatchNorm2d, cnnext.nn.BatchNormReLU2d) for m in bns), str(rep)
    assert len(rep.fused) == sum(type(m) is cnnext.nn.BatchNormReLU2d for m in bns)
    assert name not in ("vgg11_bn", "densenet121") or rep.fused  # BN -> ReLU inside their Sequentials
    assert list(model.state_dict()) == list(state)
    assert not rep.left and len(rep.replaced) >= len(convs)
    assert all(p is params[n] for n, p in model.named_parameters())
    out_c, g_c, b_c = run(model, x)
    assert_rel_close(out_c, out_t, RTOL, f"{name} logits")
    compare_grads(g_c, g_t, g_ref, RTOL, name)
    for n in b_t:
        if b_t[n].is_floating_point():
            assert_rel_close(b_c[n], b_t[n], RTOL, f"{name} buffer {n}")
    model, rep_back = swap(model, back=True, report=True)
    assert len(rep_back.replaced) == len(rep.replaced) and not rep_back.left and rep_back.fused == rep.fused
    assert not any(type(m).__module__.startswith("cnnext") for m in model.modules())


def test_keeps_parameters_buffers_mode_hooks():
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.MaxPool2d(2),
                        nn.AvgPool2d(1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 4), nn.BatchNorm1d(4))
    net[1].running_mean.fill_(0.5)
    net.eval()
    net[0].train()  # a mixed mode must survive
    seen = []
    handle = net[0].register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape)))
    net[1].register_forward_pre_hook(lambda m, i: seen.append("pre"))
    net[0].custom_tag = "kept"
    params = list(net.parameters())
    buffers = list(net.buffers())
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x = torch.randn(2, 2, 4, 4)
    ref = net(x).detach()
    seen.clear()
    out = swap(net)
    assert out is net
    assert [type(m).__name__ for m in net][:6] == ["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "AvgPool2d",
                                                     "AdaptiveAvgPool2d"]
    for i in (0, 1, 3, 4, 5, 8):
        assert type(net[i]).__module__.startswith("cnnext"), type(net[i])
    assert all(a is b for a, b in zip(net.parameters(), params))
    assert all(a is b for a, b in zip(net.buffers(), buffers))
    assert net[0].training and not net[1].training and not net.training
    assert net[0].custom_tag == "kept" and net[1].running_mean[0].item() == 0.5
    assert_rel_close(net(x), ref, RTOL, "after swap")
    assert seen == [(2, 3, 4, 4), "pre"]
    handle.remove()  # a handle taken before the swap still removes its hook
    seen.clear()
    net(x).sum().backward()
    opt.step()  # the optimizer built before the swap updates the swapped layers' parameters
    assert seen == ["pre"]
    assert net[0].weight is params[0]
    back = swap(net, back=True)
    assert all(type(m).__module__.startswith("torch") for m in back.modules())
    assert all(a is b for a, b in zip(back.parameters(), params))


def test_report_lists_what_it_left_and_why():
    class MyConv(nn.Conv2d):
        pass

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect"), MyConv(2, 2, 1),
                        nn.BatchNorm2d(2).to(torch.float8_e4m3fn), nn.MaxPool2d(2, return_indices=True),
                        nn.LazyConv2d(2, 1), nn.Conv2d(2, 2, 1).to(torch.float8_e5m2))
    x = torch.randn(1, 1, 6, 6)
    ref0 = net[0](x)
    ref3 = net[3](ref0)
    net, rep = swap(net, report=True)
    left = {p: (c, why) for p, c, why in rep.left}
    assert left["1"][0] == "MyConv" and "subclass" in left["1"][1]
    assert "float8_e4m3fn" in left["2"][1] and "float8_e5m2" in left["5"][1]
    assert left["4"][0] == "LazyConv2d"
    assert [p for p, _, _ in rep.replaced] == ["0", "3"]
    assert type(net[0]) is cnnext.nn.Conv2d and type(net[3]) is cnnext.nn.MaxPool2d
    assert type(net[1]) is MyConv and type(net[2]) is nn.BatchNorm2d
    assert_rel_close(net[0](x), ref0, RTOL, "reflect-padded conv")
    out, idx = net[3](ref0)
    assert_rel_close(out, ref3[0], RTOL, "max pool") and torch.equal(idx, ref3[1])
    text = str(rep)
    assert "replaced 2, left 4" in text and "subclass" in text


def test_back_leaves_fused_batchnorm_relu():
    net = nn.Sequential(cnnext.nn.BatchNormReLU2d(3), cnnext.nn.Conv2d(3, 3, 1))
    net, rep = swap(net, back=True, report=True)
    assert type(net[0]) is cnnext.nn.BatchNormReLU2d and type(net[1]) is nn.Conv2d
    assert rep.left[0][0] == "0" and "fused" in rep.left[0][2]


def test_root_module_and_shared_modules():
    conv = nn.Conv2d(1, 1, 3)
    new = swap(conv)
    assert type(new) is cnnext.nn.Conv2d and new.weight is conv.weight
    shared = nn.Conv2d(1, 1, 1)
    net = nn.Sequential(shared, nn.ReLU(), shared)
    swap(net)
    assert net[0] is net[2] and type(net[0]) is cnnext.nn.Conv2d


def test_dropping_into_a_cnnext_model_is_a_noop():
    from cnnext.models import lenet
    net = lenet(layers="cnnext")
    net, rep = swap(net, report=True)
    assert not rep.replaced and not rep.left


def test_fuses_batchnorm_relu_pairs_of_a_sequential():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(inplace=True),
                        nn.Sequential(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4), nn.ReLU()),
                        nn.BatchNorm2d(4), nn.Sigmoid(), nn.Flatten(), nn.Linear(64, 6), nn.BatchNorm1d(6), nn.ReLU())
    x = torch.randn(3, 2, 4, 4)
    ref = copy.deepcopy(net)
    keys = list(net.state_dict())
    params = list(net.parameters())
    net, rep = swap(net, report=True)
    assert rep.fused == [("1", "2"), ("8", "9"), ("3.1", "3.2")]
    assert type(net[1]) is cnnext.nn.BatchNormReLU2d and type(net[2]) is cnnext.nn.FusedReLU and net[2].inplace
    assert type(net[3][1]) is cnnext.nn.BatchNormReLU2d and type(net[8]) is cnnext.nn.BatchNormReLU1d
    assert type(net[4]) is cnnext.nn.BatchNorm2d  # followed by a Sigmoid: not fused
    assert ("1", "BatchNorm2d", "cnnext.nn.BatchNormReLU2d") in rep.replaced
    assert "fused 3" in str(rep) and "fused    1 + 2" in str(rep)
    assert list(net.state_dict()) == keys and all(a is b for a, b in zip(net.parameters(), params))
    g_ref = run(copy.deepcopy(ref).double(), x.double())[1]
    out_r, g_r, b_r = run(ref, x)
    out_c, g_c, b_c = run(net, x)
    assert_rel_close(out_c, out_r, RTOL, "fused logits")
    compare_grads(g_c, g_r, g_ref, RTOL, "fused")
    for n in b_r:
        if b_r[n].is_floating_point():
            assert_rel_close(b_c[n], b_r[n], RTOL, f"fused buffer {n}")
    net, back = swap(net, back=True, report=True)
    assert back.fused == rep.fused and not back.left
    assert type(net[1]) is nn.BatchNorm2d and type(net[2]) is nn.ReLU and net[2].inplace
    assert type(net[9]) is nn.ReLU and not net[9].inplace and type(net[8]) is nn.BatchNorm1d
    assert [type(m) for m in net.modules()] == [type(m) for m in ref.modules()]


def test_no_fusion_with_hooks_shared_batchnorm_or_fuse_false():
    hooked = nn.Sequential(nn.BatchNorm2d(2), nn.ReLU())
    hooked[1].register_forward_hook(lambda m, i, o: None)
    bn = nn.BatchNorm2d(2)
    shared = nn.Sequential(nn.Sequential(bn, nn.ReLU()), bn)  # the BN also runs without a ReLU
    plain = nn.Sequential(nn.BatchNorm2d(2), nn.ReLU())
    for net, kw in ((hooked, {}), (shared, {}), (plain, {"fuse": False})):
        net, rep = swap(net, report=True, **kw)
        assert not rep.fused
        assert not any(type(m) is cnnext.nn.BatchNormReLU2d for m in net.modules())
        assert any(type(m) is cnnext.nn.BatchNorm2d for m in net.modules())
