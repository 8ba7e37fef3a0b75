"""Data snapshots against a real S3 (SeaweedFS): a run stores its training data as
content-addressed parquet (deduplicated by sha256), lineage and the model card reference it,
`mainsail data show / diff` read it, and a run reproduced from the snapshot alone gives
byte-identical model.joblib and metrics.json."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from mainsail.cli.data import app
from mainsail.config import load_config
from mainsail.data.snapshot import sha256_hex
from mainsail.lifecycle.run import run
from mainsail.registry import ModelRegistry
from mainsail.registry.seaweedfs import SeaweedS3
from mainsail.registry.snapshots import SnapshotStore
from tests.support.configs import REPO, tiny_overrides

pytestmark = pytest.mark.integration


def test_run_reproduced_from_its_snapshot_alone_gives_identical_model_and_metrics(
    s3: SeaweedS3, tmp_path: Path
) -> None:
    # The default config: its training rows are Feast's point-in-time join of the data file.
    repo = tmp_path / "feature_repo"
    shutil.copytree(REPO / "feature_repo", repo, ignore=shutil.ignore_patterns("data"))
    overrides = {**tiny_overrides(tmp_path, s3.endpoint.endpoint), "features.repo_dir": str(repo)}
    cfg = load_config(REPO / "configs" / "churn.yaml", overrides)
    assert cfg.features.training_set is True
    registry = ModelRegistry(s3.client(), "mainsail-models")
    registry.ensure_bucket()
    store = SnapshotStore(registry)

    first = run(cfg, snapshots=store, run_id="first")
    lineage = json.loads((first.run_dir / "lineage.json").read_text())
    ref = lineage["data_snapshot"]
    data = Path(cfg.data.path).read_bytes()
    assert ref["sha256"] == sha256_hex(data) == lineage["data_sha256"]  # parquet kept verbatim
    assert ref["uri"] == f"s3://mainsail-models/_data/sha256/{ref['sha256']}.parquet"
    assert ref["rows"] == 600 and ref["stored"] == "written"
    card = yaml.safe_load((first.run_dir / "model" / "model_card.yaml").read_text())
    assert card["training_data"]["snapshot"]["sha256"] == ref["sha256"]

    # The original data file is gone: only the run folder and the snapshot remain.
    Path(cfg.data.path).unlink()
    cli = CliRunner()
    out = tmp_path / "reproduced"
    result = cli.invoke(app, ["reproduce", str(first.run_dir), "--runs-dir", str(out)])
    assert result.exit_code == 0, result.output
    assert "model/model.joblib: identical" in result.output
    assert "model/metrics.json: identical" in result.output
    again = out / "first-reproduced"
    for name in ("model/model.joblib", "model/metrics.json", "model/feature_lookup.json"):
        assert (first.run_dir / name).read_bytes() == (again / name).read_bytes(), name
    second = json.loads((again / "lineage.json").read_text())["data_snapshot"]
    assert second["sha256"] == ref["sha256"] and second["stored"] == "deduplicated"
    keys = list(registry.client.list_objects("mainsail-models", prefix="_data/", recursive=True))
    assert [k.object_name for k in keys] == [f"_data/sha256/{ref['sha256']}.parquet"]

    # `mainsail data show` and `diff`: a run on fewer rows with one column more.
    table = pq.read_table(io.BytesIO(store.get(ref["sha256"])))
    table = table.slice(0, 500)
    table = table.append_column("loyalty_tier", table.column(1))
    sink = io.BytesIO()
    pq.write_table(table, sink)
    other_sha, written = store.put(sink.getvalue())
    assert written
    other = tmp_path / "runs" / "other"
    shutil.copytree(first.run_dir, other)
    (other / "lineage.json").write_text(
        json.dumps({**lineage, "data_snapshot": {**ref, "sha256": other_sha}})
    )
    shown = cli.invoke(app, ["show", str(first.run_dir), "--json"])
    assert shown.exit_code == 0, shown.output
    info = json.loads(shown.output)
    assert info["rows"] == 600 and info["sha256"] == ref["sha256"]
    assert info["columns"]["churned"]["missing"] == 0
    diffed = cli.invoke(app, ["diff", str(first.run_dir), str(other), "--json"])
    assert diffed.exit_code == 0, diffed.output
    change = json.loads(diffed.output)
    assert change["same_data"] is False
    assert change["rows"] == {"before": 600, "after": 500, "change": -100}
    assert change["added_columns"] == ["loyalty_tier"] and change["removed_columns"] == []
    assert change["dtype_changes"] == {}
    tenure = change["changed_columns"]["tenure_months"]
    assert tenure["mean"][0] != tenure["mean"][1]  # per-column summaries, before and after
    same = cli.invoke(app, ["diff", str(first.run_dir), str(again)])
    assert same.exit_code == 0 and "same data" in same.output

    missing = cli.invoke(app, ["show", str(tmp_path)])
    assert missing.exit_code == 2 and "not a run folder" in " ".join(missing.output.split())
