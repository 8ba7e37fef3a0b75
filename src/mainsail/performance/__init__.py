"""Label-free performance estimation: how well a served model does before its labels arrive.

- :mod:`~mainsail.performance.calibration`: the calibration check of a model's scores on its
  labelled reference sample (expected calibration error, raw and after an isotonic
  recalibration fitted on that sample, cross-fitted so the check is honest).
- :mod:`~mainsail.performance.cbpe`: confidence-based performance estimation (CBPE) for binary
  classification: expected accuracy, F1 and ROC AUC of a window of served scores, from the
  calibrated probabilities alone.
- :mod:`~mainsail.performance.dle`: direct loss estimation (DLE) for regression: a model of the
  absolute and squared error fitted on the reference sample, averaged over the served rows.

Both estimators are valid under covariate shift (the features' distribution moves, the relation
between features and target does not); neither can see a change of that relation (concept
drift): that is what the labelled A/B analysis and retraining are for. Pure numpy and
scikit-learn, so they run in the drift sidecar (numpy<2) and the pipeline env alike.
"""
