"""Mirrors ``dassl.utils``: re-exports the helpers of its submodules (``from dassl.utils import *``)."""

from .tools import *  # noqa: F401,F403
from .logger import *  # noqa: F401,F403
from .meters import *  # noqa: F401,F403
from .registry import *  # noqa: F401,F403
from .torchtools import *  # noqa: F401,F403
