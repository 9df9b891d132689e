"""A user's own optimizer that happens to share its class name with pytorch_optimizer.Lion."""

import torch


class Lion(torch.optim.SGD):
    """Plain SGD under another name (a user's lion.Lion in the issue)."""
