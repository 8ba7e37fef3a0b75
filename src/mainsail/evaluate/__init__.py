"""Cross-validation, metrics, paired tests, selection, importance, plots, model card, report."""
