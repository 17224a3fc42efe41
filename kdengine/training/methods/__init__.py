"""The distillation methods, one module each, registered where they are defined (``base.register_method``) and
declared in ``kdengine.method_catalog``; importing this package registers the built-in ones."""
from . import attention, crd, dist, dkd, fitnet, hinton, relational  # noqa: F401 - each registers its methods
from .base import METHODS, Context, Method, ModelShape, Outputs, register_method  # noqa: F401
