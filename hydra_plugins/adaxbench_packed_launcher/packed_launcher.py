"""``hydra/launcher=packed``: runs a sweep like the basic launcher, but trains the jobs that
differ only in seed (and optimizer hyperparameters) as one vectorised model, up to
``hydra.launcher.max_pack`` jobs at a time. The work is in ``adaxbench.train.packed``."""

# No `from __future__ import annotations`: Hydra's plugin scan executes this module before it
# is in sys.modules, where dataclasses cannot resolve string annotations.
import sys
from dataclasses import dataclass
from typing import Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


@dataclass
class PackedLauncherConf:
    _target_: str = "hydra_plugins.adaxbench_packed_launcher.packed_launcher.PackedLauncher"
    # Most jobs trained as one pack (memory grows with it: parameters, optimizer state, activations).
    max_pack: int = 64


ConfigStore.instance().store(group="hydra/launcher", name="packed", node=PackedLauncherConf, provider="adaxbench")


class PackedLauncher(Launcher):
    def __init__(self, max_pack: int = 64) -> None:
        if isinstance(max_pack, bool) or not isinstance(max_pack, int) or max_pack < 1:
            print(f"adaxbench: error: hydra.launcher.max_pack must be an integer >= 1, got {max_pack!r}",
                  file=sys.stderr)
            sys.exit(2)
        self.max_pack = max_pack
        self.config: Optional[DictConfig] = None
        self.task_function: Optional[TaskFunction] = None
        self.hydra_context: Optional[HydraContext] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from adaxbench.report.best import sweep_score, wants_scores
        from adaxbench.train.packed import launch

        returns = launch(self, job_overrides, initial_job_idx)
        if not wants_scores(self.config.hydra.sweeper):
            return returns
        for ret in returns:  # a packed member's status -> its score, as a job alone returns it
            if isinstance(ret._return_value, str):
                ret.return_value = sweep_score(ret.hydra_cfg.hydra.runtime.output_dir, self.config.hydra.sweeper)
        return returns
