"""Time ``bnproof.audit.audit`` on a ResNet-50-sized model, numeric confirmation included.

The model is written here (no torchvision): the ResNet-50 layout of He et
al. (2016) -- a 7x7 stem, bottleneck blocks [3, 4, 6, 3] with widths 64, 128,
256, 512 and expansion 4, projection shortcuts -- 53 BatchNorms, and every
convolution written with ``bias=True`` (the pattern the audit looks for), so
that each of the 53 conv biases is a finding to prove and confirm.

Goal: under 10 s on 2 cores. Run::

    python benchmarks/audit_resnet50.py [--repeats 3] [--size 32] [--batch 2] [--threads 1]

and read the wall time of each run and the findings.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

GOAL_SECONDS = 10.0


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=True)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=True)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=True)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=True),
                                      nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.down is None else self.down(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet50(nn.Module):
    def __init__(self, classes: int = 1000):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=True),
                                  nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                                  nn.MaxPool2d(3, stride=2, padding=1))
        layers, cin = [], 64
        for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            for k in range(blocks):
                layers.append(Bottleneck(cin, width, stride if k == 0 else 1))
                cin = width * Bottleneck.expansion
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        return self.fc(self.pool(self.layers(self.stem(x))).flatten(1))


def main() -> int:
    from bnproof.audit import audit

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=32, help="input height and width")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch intra-op threads (default: torch's own choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = ResNet50()
    norms = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    params = sum(p.numel() for p in model.parameters())
    x = torch.randn(args.batch, 3, args.size, args.size)
    walls = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        report = audit(model, x)
        walls.append(time.perf_counter() - start)
    dead = [f for f in report.findings if f.kind == "dead"]
    scale = [f for f in report.findings if f.kind == "scale-invariant"]
    print(f"model: ResNet-50 layout, {norms} BatchNorms, {params / 1e6:.1f} M parameters, "
          f"input {tuple(x.shape)}, torch threads {torch.get_num_threads()}")
    print(f"findings: {len(dead)} dead biases ({report.redundant_dims_total} dimensions), "
          f"{len(scale)} scale-invariant weights, {len(report.inconsistencies)} dropped")
    print("wall seconds per audit (trace + rules + float64 confirmation): "
          + ", ".join(f"{w:.2f}" for w in walls))
    best = min(walls)
    verdict = "meets" if best < GOAL_SECONDS else "misses"
    print(f"best {best:.2f} s: {verdict} the goal of {GOAL_SECONDS:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
