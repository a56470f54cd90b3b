"""Winograd's float32 error per tile size: F(2x2, 3x3), F(3x3, 3x3) and F(4x4, 3x3) against torch's float64
result, as multiples of torch's own float32 error, on the family-sized 3x3 layers of
tests/test_conv2d_winograd.py (the same data: randn inputs, raw or ReLU'd, weights randn / (3 sqrt C)).

Issue #15 lets a float32 conv be as far from torch's float64 result as twice torch's own float32 error,
norm-wise. This script shows which tile sizes can meet that. Each tile size runs through torch in float32,
with the structure of cnnext's kernel: U = G g G^T, V = B^T d B, the channel sum in fresh 64-channel
partials that are then added, and Y = A^T M A. The products and sums are float32, in an order that is not
the kernel's. So the ratios are the arithmetic's, not one implementation's. The row "cnnext" is the
library's own F(2x2) kernel (csrc/cpu/conv2d_winograd.cpp) on the same inputs.

Transforms (Lavin & Gray 2016; interpolation points 0, 1, -1 for F(2), and also 2 for F(3) and -2 for
F(4), plus infinity).

Run from the repository root: python -m bench.winograd_tiles [--threads 2]
"""
import argparse
import os

import torch
import torch.nn.functional as F

import cnnext
from bench import harness

TRANSFORMS = {  # m: (B^T, G, A^T) of F(m x m, 3x3), tiles of m + 2
    2: ([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
        [[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]],
        [[1, 1, 1, 0], [0, 1, -1, -1]]),
    3: ([[2, -1, -2, 1, 0], [0, -2, -1, 1, 0], [0, 2, -3, 1, 0], [0, -1, 0, 1, 0], [0, 2, -1, -2, 1]],
        [[1 / 2, 0, 0], [-1 / 2, -1 / 2, -1 / 2], [-1 / 6, 1 / 6, -1 / 6], [1 / 6, 1 / 3, 2 / 3], [0, 0, 1]],
        [[1, 1, 1, 1, 0], [0, 1, -1, 2, 0], [0, 1, 1, 4, 1]]),
    4: ([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0],
         [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
        [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6],
         [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
        [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]),
}
LAYERS = [(4, 64, 64, 24), (4, 128, 128, 12), (2, 256, 256, 12), (2, 512, 64, 12), (4, 32, 32, 30),
          (4, 160, 32, 24)]  # (N, C, K, H = W), padding 1


def winograd(x, w, m, chunk=64):
    """F(m x m, 3x3) of x (N, C, H, W) with w (K, C, 3, 3), padding 1, in x's dtype."""
    BT, G, AT = (torch.tensor(t, dtype=x.dtype) for t in TRANSFORMS[m])
    N, C, H, W = x.shape
    th, tw = -(-H // m), -(-W // m)
    d = F.pad(x, (1, tw * m + 1 - W, 1, th * m + 1 - H)).unfold(2, m + 2, m).unfold(3, m + 2, m)
    V, U = BT @ d @ BT.T, G @ w @ G.T  # (N, C, th, tw, m+2, m+2), (K, C, m+2, m+2)
    M = 0
    for c0 in range(0, C, chunk):
        M = M + torch.einsum("kcij,nctsij->nktsij", U[:, c0:c0 + chunk], V[:, c0:c0 + chunk])
    Y = AT @ M @ AT.T  # (N, K, th, tw, m, m)
    return Y.permute(0, 1, 2, 4, 3, 5).reshape(N, -1, th * m, tw * m)[:, :, :H, :W]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    print(f"\n### Winograd float32 error / torch float32 error (vs torch float64), 3x3 padding 1\n\n"
          f"{harness.machine_line()}\n")
    print("| layer (N, C, K, H) | input | torch's error | F(2x2) | F(3x3) | F(4x4) | cnnext F(2x2) |")
    print("|---|---|---|---|---|---|---|")
    worst = {m: 0.0 for m in TRANSFORMS} | {"cnnext": 0.0}
    for N, C, K, H in LAYERS:
        for relu in (False, True):
            g = torch.Generator().manual_seed(0)
            x = torch.randn(N, C, H, H, generator=g)
            x = x.relu() if relu else x
            w = torch.randn(K, C, 3, 3, generator=g) / (3 * C ** 0.5)
            ref = F.conv2d(x.double(), w.double(), padding=1)
            err = lambda y: ((y.double() - ref).norm() / ref.norm()).item()
            e_torch = err(F.conv2d(x, w, padding=1))
            r = {m: err(winograd(x, w, m)) / e_torch for m in TRANSFORMS}
            os.environ["CNNEXT_CONV2D_FWD"] = "winograd"  # (read per call) whatever the planner would pick
            r["cnnext"] = err(cnnext.functional.conv2d(x, w, None, 1, 1)) / e_torch
            del os.environ["CNNEXT_CONV2D_FWD"]
            worst = {k: max(worst[k], r[k]) for k in worst}
            print(f"| {N}, {C}, {K}, {H} | {'relu' if relu else 'randn'} | {e_torch:.2e} | "
                  + " | ".join(f"{r[k]:.2f}" for k in (2, 3, 4, "cnnext")) + " |")
    print("\nworst ratio: " + ", ".join(f"{'F(%dx%d)' % (k, k) if k != 'cnnext' else 'cnnext F(2x2)'} "
                                        f"{v:.2f}" for k, v in worst.items()) + " (the bar: <= 2)")


if __name__ == "__main__":
    main()
