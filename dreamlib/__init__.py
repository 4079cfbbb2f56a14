"""dreamlib: dreaming to prune image-deraining networks, as a course and a library."""
__version__ = "0.1.0"

from .settings import QUICK, pick_device, seed_everything  # noqa: F401
