"""Ray Data reader: `read_history` gives a `ray.data.Dataset` of history partitioned by step range.

The public import path of `connector.engines.ray`, where the documentation lives.
"""

from .engines.ray import *  # noqa: F403
from .engines.ray import __all__ as __all__
