"""``python -m components.distil`` with batch norm normalising by its running statistics (as in eval
mode) while training: the one part of DDP training that is per-process by design on the CPU, pinned,
so a test can hold everything else (sharding, gradient averaging, summed figures) to float rounding.

    torchrun --nproc-per-node 2 tests/core/distil_bn_pinned.py BATCH_ID --params params.yaml
"""

import runpy
import sys

import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm


def _pinned(self, x):
    return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)


if __name__ == "__main__":
    _BatchNorm.forward = _pinned
    sys.argv = ["components.distil", *sys.argv[1:]]
    runpy.run_module("components.distil", run_name="__main__", alter_sys=True)
