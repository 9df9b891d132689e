"""adaxbench's Hydra config tree (shipped inside the package as ``adaxbench.configs``)."""

from omegaconf import OmegaConf

# ${adaxbench.class_name:mypkg.MyTask} -> "MyTask": the default name of a user's own task.
if not OmegaConf.has_resolver("adaxbench.class_name"):
    OmegaConf.register_new_resolver("adaxbench.class_name", lambda target: str(target).rsplit(".", 1)[-1])
