"""Spark data source: `register(spark)` adds the `wandb_history` format to a SparkSession.

The public import path of `connector.engines.spark`, where the documentation lives.
"""

from .engines.spark import *  # noqa: F403
from .engines.spark import __all__ as __all__
