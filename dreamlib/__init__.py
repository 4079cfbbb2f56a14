"""dreamlib: dreaming to prune image-deraining networks, as a course and a library.

>>> import dreamlib
>>> spec = dreamlib.describe(my_net)                     # what dreamlib sees of any network
>>> result = dreamlib.compress(my_net, "clean_photos/", target=0.6)
"""
__version__ = "0.1.0"

from .settings import QUICK, pick_device, seed_everything  # noqa: F401

_LAZY = {
    "compress": ("dreamlib.compression", "compress"), "CompressConfig": ("dreamlib.compression", "CompressConfig"),
    "CompressResult": ("dreamlib.compression", "CompressResult"),
    "ModelSpec": ("dreamlib.spec", "ModelSpec"), "describe": ("dreamlib.spec", "describe"),
    "spec_of": ("dreamlib.spec", "spec_of"), "attach_spec": ("dreamlib.spec", "attach_spec"),
    "infer_spec": ("dreamlib.spec", "infer_spec"), "unwrap": ("dreamlib.spec", "unwrap"),
}


def __getattr__(name):  # lazy: ``import dreamlib`` stays light (no torch import)
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        value = getattr(importlib.import_module(mod), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dreamlib' has no attribute {name!r}")
