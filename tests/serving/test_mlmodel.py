"""cajnn.serving.mlmodel: a logged cajnn model's artifacts, read through MLflow's Model.load."""

from __future__ import annotations

import pytest

from cajnn.serving.mlmodel import CajnnArtifacts, NotCajnnModelError, cajnn_artifacts


def _mlmodel(folder, artifacts: str):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "MLmodel").write_text("flavors:\n  python_function:\n" + artifacts)
    return folder


def test_weights_and_config_paths(tmp_path):
    arts = (
        "    artifacts:\n      config:\n        path: artifacts/c.json\n      weights:\n        path: artifacts/w.st\n"
    )
    folder = _mlmodel(tmp_path / "m", arts)
    assert cajnn_artifacts(str(folder)) == CajnnArtifacts("artifacts/w.st", "artifacts/c.json")
    assert cajnn_artifacts(str(folder / "MLmodel")) == CajnnArtifacts("artifacts/w.st", "artifacts/c.json")


def test_config_is_optional(tmp_path):
    folder = _mlmodel(tmp_path / "m", "    artifacts:\n      weights:\n        path: w.st\n")
    assert cajnn_artifacts(str(folder)) == CajnnArtifacts("w.st", None)


@pytest.mark.parametrize(
    "artifacts", ["    loader_module: x\n", "    artifacts:\n      config:\n        path: c.json\n"]
)
def test_no_weights_is_not_a_cajnn_model(tmp_path, artifacts):
    folder = _mlmodel(tmp_path / "m", artifacts)
    with pytest.raises(NotCajnnModelError, match=r"^models:/x/1 is not a cajnn model: .*'weights' artifact"):
        cajnn_artifacts(str(folder), name="models:/x/1")
    with pytest.raises(ValueError, match="is not a cajnn model"):  # callers that catch ValueError see it
        cajnn_artifacts(str(folder))
