"""Import CompressAI on machines where its unused optional imports cannot load.

`import compressai` imports all of its subpackages, and three of them import packages
enhance never uses:

* `compressai.registry.transforms` does `import torchvision.transforms` and
  `import torch_geometric.transforms`, and reads only `torchvision.transforms.__dict__`
  and `torch_geometric.transforms.__dict__` (to list transform names);
* `compressai.transforms.point` imports `BaseTransform` and `Center` from
  `torch_geometric.transforms`, `Data` from `torch_geometric.data` and the
  `functional_transform` decorator from `torch_geometric.data.datapipes`, to define
  point-cloud transforms;
* `compressai.datasets.pointcloud.shapenet` does `import pandas as pd` and uses it only
  when a ShapeNet dataset is built.

torchvision has no CPU wheel matching a CPU-only torch, and PyPI's wheel fails to load
with one; torch_geometric and pandas are large and are not dependencies of enhance. No
other module on compressai's import path touches them (`compressai.utils.eval_model`
imports torchvision, but nothing imports that module).

`import_compressai()` first tries the real import. Only if it fails does it put minimal
stand-ins for the packages that cannot be imported into `sys.modules`, import compressai,
and then remove the stand-ins again, so any later `import torchvision` elsewhere still
fails as it should. The stand-in classes raise when instantiated, so a compressai point-
cloud feature used by mistake fails loudly instead of misbehaving.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

from .errors import CodecUnavailable

INSTALL_HINT = "install CompressAI without its optional dependencies: pip install --no-deps compressai==1.2.8 pytorch-msssim"


class _StandInClass:
    """Base of the stand-in classes; compressai only subclasses or names them at import time."""

    _package = ""

    def __new__(cls, *args, **kwargs):
        raise RuntimeError(
            f"{cls.__name__} comes from a stand-in for {cls._package}, which is not installed; "
            f"install {cls._package} to use this part of compressai"
        )


def _standin_class(name: str, package: str) -> type:
    return type(name, (_StandInClass,), {"_package": package})


def _functional_transform(name: str):
    def register(cls):
        return cls

    return register


def _module(name: str, **attributes) -> types.ModuleType:
    module = types.ModuleType(name, f"enhance stand-in for {name} (see enhance._compressai)")
    for key, value in attributes.items():
        setattr(module, key, value)
    return module


def _torchvision_standins() -> dict[str, types.ModuleType]:
    transforms = _module("torchvision.transforms")
    return {"torchvision": _module("torchvision", transforms=transforms), "torchvision.transforms": transforms}


def _torch_geometric_standins() -> dict[str, types.ModuleType]:
    package = "torch_geometric"
    datapipes = _module("torch_geometric.data.datapipes", functional_transform=_functional_transform)
    data = _module("torch_geometric.data", Data=_standin_class("Data", package), datapipes=datapipes)
    transforms = _module(
        "torch_geometric.transforms",
        BaseTransform=_standin_class("BaseTransform", package),
        Center=_standin_class("Center", package),
    )
    return {
        "torch_geometric": _module("torch_geometric", data=data, transforms=transforms),
        "torch_geometric.data": data,
        "torch_geometric.data.datapipes": datapipes,
        "torch_geometric.transforms": transforms,
    }


def _pandas_standins() -> dict[str, types.ModuleType]:
    return {"pandas": _module("pandas")}


# The module whose import is probed, and the stand-ins used when that import fails.
_OPTIONAL_IMPORTS = (
    ("torchvision.transforms", _torchvision_standins),
    ("torch_geometric.transforms", _torch_geometric_standins),
    ("pandas", _pandas_standins),
)


def _forget(package: str) -> None:
    for name in [name for name in sys.modules if name == package or name.startswith(package + ".")]:
        del sys.modules[name]


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    # A broken install (PyPI's torchvision on CPU torch) raises RuntimeError or OSError, not only ImportError.
    except Exception:
        _forget(module.split(".")[0])
        return False
    return True


def import_compressai() -> types.ModuleType:
    """The `compressai` package, imported with stand-ins where its optional imports cannot load.

    Raises CodecUnavailable when compressai itself is missing or still fails to import.
    """
    if "compressai" in sys.modules:
        return sys.modules["compressai"]
    if importlib.util.find_spec("compressai") is None:
        raise CodecUnavailable(f"compressai is not installed; {INSTALL_HINT}")
    try:
        return importlib.import_module("compressai")
    except Exception as error:  # any failure of an optional import, whatever its type
        _forget("compressai")
        reason = error
    standins: dict[str, types.ModuleType] = {}
    for probe, build in _OPTIONAL_IMPORTS:
        if not _importable(probe):
            standins.update(build())
    if not standins:
        raise CodecUnavailable(f"compressai does not import ({reason}); {INSTALL_HINT}") from None
    sys.modules.update(standins)
    try:
        return importlib.import_module("compressai")
    except Exception as error:
        _forget("compressai")
        raise CodecUnavailable(f"compressai does not import ({error}); {INSTALL_HINT}") from None
    finally:
        for name, module in standins.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]
