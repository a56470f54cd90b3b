"""corr2d vs the same correlation through F.conv2d (one input and one output channel).

Run from the repository root: python -m bench.bench_corr2d [--threads 2]
"""
import torch
import torch.nn.functional as F

import cnnext
from bench import harness


def cases():
    out = []
    for B, H, W, k in [(32, 28, 28, 5), (32, 96, 96, 3), (8, 224, 224, 11), (1, 512, 512, 3)]:
        x = torch.randn(B, H, W)
        K = torch.randn(k, k)
        flops = 2 * B * (H - k + 1) * (W - k + 1) * k * k
        out.append(harness.Case(f"fwd B={B} {H}x{W} k={k}", lambda x=x, K=K: F.conv2d(x[:, None], K[None, None]),
                                lambda x=x, K=K: cnnext.functional.corr2d(x, K), flops=flops, group="forward"))
        xg, Kg = x.clone().requires_grad_(), K.clone().requires_grad_()

        def t_fb(xg=xg, Kg=Kg):
            F.conv2d(xg[:, None], Kg[None, None]).sum().backward()

        def c_fb(xg=xg, Kg=Kg):
            cnnext.functional.corr2d(xg, Kg).sum().backward()

        out.append(harness.Case(f"fwd+bwd B={B} {H}x{W} k={k}", t_fb, c_fb, flops=3 * flops, group="forward+backward"))
    return out


if __name__ == "__main__":
    args = harness.parser(__doc__).parse_args()
    harness.run(cases(), threads=args.threads, repeats=3 if args.quick else args.repeats, min_time=args.min_time,
                title="corr2d, CPU", json_path=args.json)
