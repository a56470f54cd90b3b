"""ops/_autograd.fast_apply: the ops' autograd Functions run in the classic (ctx in forward) form,
~23 us cheaper per call, except under torch.func transforms, which need the setup_context form.
Both give torch's gradients."""
import pytest
import torch
import torch.nn.functional as F

import cnnext.functional as cf

torch.manual_seed(0)
X = torch.randn(2, 3, 7, 7, dtype=torch.float64)
W = torch.randn(4, 3, 3, 3, dtype=torch.float64)
K = torch.randn(2, 3, dtype=torch.float64)
BW, BB = torch.rand(3, dtype=torch.float64) + 0.5, torch.randn(3, dtype=torch.float64)

CASES = {  # name: (cnnext loss, torch loss) as functions of the differentiated input
    "conv2d": (lambda w: cf.conv2d(X, w, None, 1, 1).square().sum(), lambda w: F.conv2d(X, w, None, 1, 1).square().sum(), W),
    "max_pool2d": (lambda x: cf.max_pool2d(x, 3, 2, 1).square().sum(), lambda x: F.max_pool2d(x, 3, 2, 1).square().sum(), X),
    "corr2d": (lambda k: cf.corr2d(X, k).square().sum(), lambda k: F.conv2d(X.reshape(6, 1, 7, 7), k[None, None]).square().sum(), K),
    "avg_pool2d": (lambda x: cf.avg_pool2d(x, 3, 2, 1).square().sum(), lambda x: F.avg_pool2d(x, 3, 2, 1).square().sum(), X),
    "adaptive_avg_pool2d": (lambda x: cf.adaptive_avg_pool2d(x, (3, 2)).square().sum(),
                            lambda x: F.adaptive_avg_pool2d(x, (3, 2)).square().sum(), X),
    "cat": (lambda x: cf.cat([x, 2 * x[:, :1]], 1).square().sum(), lambda x: torch.cat([x, 2 * x[:, :1]], 1).square().sum(), X),
    "batch_norm": (lambda x: cf.batch_norm(x, None, None, BW, BB, training=True).pow(3).sum(),
                   lambda x: F.batch_norm(x, None, None, BW, BB, training=True).pow(3).sum(), X),
}


@pytest.mark.parametrize("name", CASES)
def test_torch_func_grad_matches_autograd(name):
    ours, ref, t = CASES[name]
    g_func = torch.func.grad(ours)(t)  # the setup_context Function (a transform is active)
    t1, t2 = t.clone().requires_grad_(), t.clone().requires_grad_()
    (g_autograd,) = torch.autograd.grad(ours(t1), t1)  # the classic twin
    (g_torch,) = torch.autograd.grad(ref(t2), t2)
    torch.testing.assert_close(g_func, g_torch, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(g_autograd, g_torch, rtol=1e-10, atol=1e-10)


def test_classic_twin_outside_transforms():
    """Outside transforms the graph node is the classic twin's (same name), not the setup_context Function's."""
    from cnnext.ops.max_pool2d import MaxPool2dFunction
    y = cf.max_pool2d(X.clone().requires_grad_(), 2)
    assert type(y.grad_fn).__name__ == "MaxPool2dFunctionBackward"
    assert type(y.grad_fn)._forward_cls is not MaxPool2dFunction
