"""Monitoring artifacts and processes: Prometheus alert rules (`rules`), Grafana dashboards
(`dashboards`), Prometheus and Alertmanager configs (`prometheus`), the checked-in copies under
monitoring/ (`artifacts`), local Prometheus and Alertmanager processes (`local`), and the
drift-to-retraining chain on one machine (`chain`).

Each module imports what it needs itself; importing this package has no side effects.
"""
