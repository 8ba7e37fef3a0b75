"""Monitoring: metrics, alert rules, Alertmanager, dashboards, A/B analysis, promotion, retraining.

Each module imports what it needs itself; importing this package has no side effects.
"""
