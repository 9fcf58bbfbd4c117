"""Make the test helpers in tests/ (e.g. `from tiny import ...`) importable."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
