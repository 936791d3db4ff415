"""The core's fixtures."""

from __future__ import annotations

import pytest

from tests.support.core import standard_policy
from workflows.policy import Policy


@pytest.fixture(scope="module")
def standard() -> Policy:
    """The shipped standard policy."""
    return standard_policy()
