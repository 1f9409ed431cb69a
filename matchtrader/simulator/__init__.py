"""Local Match-Trader exchange simulator (REST + WebSocket on one port, fault injection).

Start: ``python -m matchtrader.simulator --port 8900`` or ``manage.py run_simulator``.
Tests: ``from matchtrader.simulator.testing import running_simulator``.
"""

from .config import SimConfig
from .faults import FaultConfig

__all__ = ["SimConfig", "FaultConfig"]
