from __future__ import annotations

import pandas as pd
import pytest
from validate_helpers import make_table


@pytest.fixture
def table() -> pd.DataFrame:
    return make_table(0)
