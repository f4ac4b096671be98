import os

# Never phone home from tests (DVC analytics, MLflow/Ray usage stats).
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import pytest


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors: extra threads only add overhead, and OpenMP spin-waiting is very slow on
    a busy 2-core machine."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
