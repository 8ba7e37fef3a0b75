"""Metric-gated promotion of a challenger: the always-valid A/B analysis (`ab`), the controller
that ramps, promotes or rolls back (`controller`), and its traffic backends, the local router or
a Seldon Core 2 Experiment (`backends`)."""
