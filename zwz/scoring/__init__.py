"""Answer scoring shared by evaluation, distillation and training (paper App. 9.2-9.3, App. 10)."""

from zwz.scoring.scorer import *  # noqa: F401,F403
from zwz.scoring.scorer import __all__  # noqa: F401
