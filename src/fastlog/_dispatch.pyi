from types import ModuleType
from typing import List

LEVELS: tuple
core: ModuleType
def supported_levels() -> List[str]: ...
