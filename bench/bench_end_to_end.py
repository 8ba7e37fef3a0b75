"""Benchmark: the `mainsail run` training path next to a bare script (the lower bound).

- ``pipeline``: what `mainsail run` does after loading the config: ``run_data_stage`` (read,
  validate, split, fit the preprocessor, write artifacts) then ``run_training_stage`` (tune,
  fit every candidate, cross-validate, compare, select, importance, plots, card, report,
  reference sample), Ray started inside when the config needs it.
- ``bare``: read the same parquet file, fit a fresh copy of the same preprocessor and the chosen
  model with the same hyperparameters on the same train rows, score the test rows. Nothing else.

Each measurement runs in a fresh subprocess (imports and Ray start-up included, as for a CLI
call); runs alternate pipeline, bare, pipeline, bare... and the medians go to
bench/results/end_to_end.json with the ratio pipeline / bare per row count.

Sizes: 10,000 rows with the default config (baseline, linear, tree, mlp; 12 tuning trials;
5-fold CV; 1,000 bootstrap resamples). 1,000,000 rows with fewer candidates (baseline, linear,
tree), 4 tuning trials, 3-fold CV and 200 resamples, and one repeat by default: a full default
run at that size takes tens of minutes on 2 shared CPUs.

    .venv/pipeline/bin/python bench/bench_end_to_end.py [--sizes 10000 1000000] [--repeats 3]
        [--quick]

Targets (issue 20; exit 1 when one is missed): framework overhead <= 1.3x against a *fair*
baseline, ``fair``: a hand-written script doing the same work a careful engineer would (same
candidates, same Optuna trials on the same search spaces, the same number of grouped CV folds,
selection, refit, test score; see ``worker_fair``), at 10k and at 1M rows. The ratio to the
bare single-model script above is reported separately, for information.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(HERE))
from common import Run, add_common_args  # noqa: E402

#: Config overrides per size (dotted keys of configs/churn.yaml).
FAIR_RATIO_MAX = 1.3
QUICK_PROFILE: dict[str, Any] = {
    "train.candidates": ["baseline", "linear"],
    "tune.num_trials": 2,
    "evaluate.cv_folds": 2,
    "evaluate.bootstrap": 100,
}
PROFILES: dict[int, dict[str, Any]] = {
    10_000: {},
    1_000_000: {
        "train.candidates": ["baseline", "linear", "tree"],
        "tune.num_trials": 4,
        "evaluate.cv_folds": 3,
        "evaluate.bootstrap": 200,
    },
}


def overrides_for(
    rows: int, data_path: Path, runs_dir: Path, quick: bool = False
) -> dict[str, Any]:
    base = {
        "data.path": str(data_path),
        "data.synthetic.rows": rows,
        "runs_dir": str(runs_dir),
        "train.ray.num_cpus": 2,
    }
    profile = PROFILES.get(rows, PROFILES[1_000_000] if rows > 100_000 else {})
    if quick:
        profile = QUICK_PROFILE
    return {**base, **profile}


def worker_pipeline(spec: dict[str, Any]) -> dict[str, Any]:
    t0 = time.perf_counter()
    from mainsail.config import load_config
    from mainsail.lifecycle.data import run_data_stage
    from mainsail.lifecycle.run import run_training_stage

    cfg = load_config(REPO / "configs" / "churn.yaml", spec["overrides"])
    run_dir = Path(spec["run_dir"])
    data = run_data_stage(cfg, run_dir)
    t_data = time.perf_counter() - t0
    res = run_training_stage(cfg, data, run_dir)
    import numpy as np

    np.save(Path(spec["run_dir"]) / "train_rows.npy", data.split.train)
    np.save(Path(spec["run_dir"]) / "valid_rows.npy", data.split.valid)
    np.save(Path(spec["run_dir"]) / "test_rows.npy", data.split.test)
    return {
        "wall_s": time.perf_counter() - t0,
        "data_stage_s": t_data,
        "timings": res.timings,
        "chosen": res.chosen,
        "params": res.params.get(res.chosen or "", {}),
        "test_metric": res.test_metrics[res.chosen]["roc_auc"] if res.chosen else None,
    }


def worker_bare(spec: dict[str, Any]) -> dict[str, Any]:
    """Read → fit preprocessor + chosen model on train rows → score test rows."""
    t0 = time.perf_counter()
    import numpy as np
    import pandas as pd
    from sklearn.base import clone
    from sklearn.metrics import roc_auc_score

    from mainsail.train.candidates import fit_arrays, sample_weights
    from mainsail.train.model import to_dense
    from mainsail.train.threads import limit_threads

    prep = spec["prepared"]
    frame = pd.read_parquet(spec["data_path"])
    train = np.load(Path(prep) / "train_rows.npy")
    test = np.load(Path(prep) / "test_rows.npy")
    import joblib

    pre = clone(joblib.load(Path(prep) / "preprocessor.joblib"))  # unfitted copy: same steps
    features, target = spec["features"], spec["target"]
    # The data stage drops duplicate rows; positions refer to its frame, which keeps file order.
    Xtr = frame.iloc[train][features]
    ytr = frame.iloc[train][target].to_numpy()
    with limit_threads(1, torch_too=spec["family"] == "mlp"):
        Xt = to_dense(pre.fit_transform(Xtr, ytr))
        w = sample_weights(ytr, spec["class_weight"]) if spec["class_weight"] else None
        model = fit_arrays(
            spec["family"], spec["params"], Xt, ytr, problem_type="classification", seed=42,
            sample_weight=w,
        )  # fmt: skip
        proba = model.predict_proba(to_dense(pre.transform(frame.iloc[test][features])))[:, 1]
    auc = roc_auc_score(frame.iloc[test][target].to_numpy() == 1, proba)
    return {"wall_s": time.perf_counter() - t0, "test_metric": float(auc)}


def _fold_auc(
    frame: Any, pre: Any, features: list[str], target: str, fit_rows: Any, score_rows: Any,
    family: str, params: dict[str, Any], class_weight: Any, seed: int,
) -> float:  # fmt: skip
    """Fit a fresh preprocessor and `family` on `fit_rows`, ROC AUC on `score_rows`."""
    from sklearn.base import clone
    from sklearn.metrics import roc_auc_score

    from mainsail.train.candidates import fit_arrays, sample_weights
    from mainsail.train.model import to_dense
    from mainsail.train.threads import limit_threads

    y = frame[target].to_numpy()
    with limit_threads(1, torch_too=family == "mlp"):
        fitted = clone(pre)
        Xt = to_dense(fitted.fit_transform(frame.iloc[fit_rows][features], y[fit_rows]))
        w = sample_weights(y[fit_rows], class_weight) if class_weight else None
        model = fit_arrays(
            family, params, Xt, y[fit_rows], problem_type="classification", seed=seed,
            sample_weight=w,
        )  # fmt: skip
        proba = model.predict_proba(to_dense(fitted.transform(frame.iloc[score_rows][features])))
    return float(roc_auc_score(y[score_rows] == 1, proba[:, 1]))


def worker_fair(spec: dict[str, Any]) -> dict[str, Any]:
    """The fair baseline: what a careful engineer's own script does for the same result, with
    the same candidates, default and tuned hyperparameters (same search spaces, same number of
    Optuna TPE trials, scored on the same validation rows), the same number of grouped,
    stratified CV folds on the train rows, selection by mean CV ROC AUC, a refit on train +
    validation and the test score. Two CPUs, as the pipeline has: tuning trials run two at a
    time (Optuna threads), CV folds two at a time (joblib processes). No calibration, bootstrap,
    paired tests, importance, plots, card or report: that is what the ratio charges the
    framework with. Same split rows and preprocessing steps as the pipeline's run."""
    t0 = time.perf_counter()
    import joblib
    import numpy as np
    import optuna
    import pandas as pd
    from sklearn.model_selection import StratifiedGroupKFold

    from mainsail.config import load_config
    from mainsail.train.candidates import candidate_list, initial_params, search_space

    cfg = load_config(REPO / "configs" / "churn.yaml", spec["overrides"])
    prep = Path(spec["prepared"])
    frame = pd.read_parquet(spec["data_path"])
    train, valid, test = (np.load(prep / f"{side}_rows.npy") for side in ("train", "valid", "test"))
    pre = joblib.load(prep / "preprocessor.joblib")
    features, target, seed = spec["features"], spec["target"], cfg.seed
    cw = spec["class_weight"]
    families = candidate_list(cfg)
    params = initial_params(cfg, families, "classification")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for family in (f for f in cfg.tune.candidates if f in families):
        space = search_space(family, "classification", cfg)

        def objective(trial: Any, family: str = family, space: Any = space) -> float:
            return _fold_auc(frame, pre, features, target, train, valid, family,
                             {**params[family], **space(trial)}, cw, seed)  # fmt: skip

        study = optuna.create_study(
            direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed)
        )
        study.optimize(objective, n_trials=cfg.tune.num_trials, n_jobs=2)
        params[family] = {**params[family], **space(optuna.trial.FixedTrial(study.best_params))}
    groups = frame[cfg.data.entity_key].to_numpy()[train]
    y_train = frame[target].to_numpy()[train]
    folds = list(
        StratifiedGroupKFold(cfg.evaluate.cv_folds, shuffle=True, random_state=seed).split(
            train, y_train, groups
        )
    )
    jobs = [(f, k) for f in families for k in range(len(folds))]
    scores = joblib.Parallel(n_jobs=2)(
        joblib.delayed(_fold_auc)(frame, pre, features, target, train[folds[k][0]],
                                  train[folds[k][1]], f, params[f], cw, seed)
        for f, k in jobs
    )  # fmt: skip
    cv = {f: float(np.mean([s for (g, _), s in zip(jobs, scores, strict=True) if g == f]))
          for f in families}  # fmt: skip
    chosen = max(cv, key=lambda f: cv[f])
    auc = _fold_auc(frame, pre, features, target, np.concatenate([train, valid]), test, chosen,
                    params[chosen], cw, seed)  # fmt: skip
    return {"wall_s": time.perf_counter() - t0, "chosen": chosen, "cv_auc": cv, "test_metric": auc}


def run_sub(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(spec, fh)
    out = subprocess.run(
        [sys.executable, __file__, "--worker", kind, fh.name],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )
    Path(fh.name).unlink()
    if out.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--repeats-large", type=int, default=1, help="repeats above 100k rows")
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    add_common_args(ap)
    args = ap.parse_args()
    if args.worker:
        spec = json.loads(Path(args.worker[1]).read_text())
        fn = {"pipeline": worker_pipeline, "bare": worker_bare, "fair": worker_fair}[args.worker[0]]
        print(json.dumps(fn(spec), default=str))
        return 0
    if args.quick:
        args.sizes, args.repeats = [5000], 1
    run = Run.start("end_to_end", args)

    from mainsail.data.synthetic import generate_churn

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        for rows in args.sizes:
            data_path = Path(tmp) / f"churn_{rows}.parquet"
            generate_churn(rows, seed=42).to_parquet(data_path, index=False)
            ov = overrides_for(rows, data_path, Path(tmp) / "runs", args.quick)
            repeats = args.repeats if rows <= 100_000 else args.repeats_large
            pipe_runs, bare_runs, fair_runs = [], [], []
            for rep in range(repeats):
                run_dir = Path(tmp) / f"run_{rows}_{rep}"
                p = run_sub("pipeline", {"overrides": ov, "run_dir": str(run_dir)})
                pipe_runs.append(p)
                print(f"{rows} pipeline rep {rep}: {p['wall_s']:.1f}s chosen={p['chosen']}",
                      flush=True)  # fmt: skip
                if p["chosen"] is None:
                    raise SystemExit("the pipeline selected no model; nothing to compare")
                schema = json.loads((run_dir / "model" / "feature_schema.json").read_text())
                card = (run_dir / "model" / "model_card.yaml").read_text()
                import yaml

                cw = yaml.safe_load(card)["class_balance"]["class_weight"]
                spec = {
                    "prepared": str(run_dir),
                    "data_path": str(data_path),
                    "features": [f["name"] for f in schema["features"]],
                    "target": schema["target"],
                    "family": p["chosen"],
                    "params": p["params"],
                    "class_weight": {int(k): v for k, v in cw.items()} if cw else None,
                }
                b = run_sub("bare", spec)
                bare_runs.append(b)
                print(f"{rows} bare rep {rep}: {b['wall_s']:.1f}s", flush=True)
                f = run_sub("fair", {**spec, "overrides": ov})
                fair_runs.append(f)
                print(f"{rows} fair rep {rep}: {f['wall_s']:.1f}s chosen={f['chosen']}",
                      flush=True)  # fmt: skip
            pm = statistics.median(r["wall_s"] for r in pipe_runs)
            bm = statistics.median(r["wall_s"] for r in bare_runs)
            fm = statistics.median(r["wall_s"] for r in fair_runs)
            results[str(rows)] = {
                "profile": {k: v for k, v in ov.items() if k not in ("data.path", "runs_dir")},
                "repeats": repeats,
                "pipeline_wall_s_median": round(pm, 2),
                "bare_wall_s_median": round(bm, 2),
                "ratio_pipeline_to_bare": round(pm / bm, 2),
                "fair_wall_s_median": round(fm, 2),
                "ratio_pipeline_to_fair": round(pm / fm, 3),
                "fair_runs": fair_runs,
                "pipeline_runs": pipe_runs,
                "bare_runs": bare_runs,
            }
    targets = [
        run.target(
            f"{rows:,} rows: pipeline / fair hand-written baseline",
            results[str(rows)]["ratio_pipeline_to_fair"] if str(rows) in results else None,
            "<=",
            FAIR_RATIO_MAX,
            "x",
            "same candidates, tuning trials, CV folds (worker_fair)",
        )
        for rows in (sorted(int(s) for s in results) if args.quick else (10_000, 1_000_000))
    ]
    doc = {
        "description": __doc__.split("\n\n")[0],
        "results": results,
        "ratio_pipeline_to_bare_single_model": {
            k: v["ratio_pipeline_to_bare"] for k, v in results.items()
        },
    }
    print(json.dumps({k: v["ratio_pipeline_to_bare"] for k, v in results.items()}))
    return run.finish(
        doc, targets, notes=["ratio_pipeline_to_bare_single_model: information, not a target"]
    )


if __name__ == "__main__":
    sys.exit(main())
