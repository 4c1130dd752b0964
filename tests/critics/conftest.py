import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """On two shared, busy cores two torch threads spin against each other; one is several times faster."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
