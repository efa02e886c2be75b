# Same API as the baseline build (one .pxi source compiled per ISA level).
from ._core_baseline import *  # noqa: F401,F403
from ._core_baseline import MLPWorkspace as MLPWorkspace  # noqa: F401
