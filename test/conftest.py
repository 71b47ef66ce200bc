"""Shared test setup."""
import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Planning batches are tiny: a second intra-op thread only waits for a core that other
    processes (the nodes under test) may hold, turning microsecond ops into milliseconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
