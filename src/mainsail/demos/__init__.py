"""Narrated demos on real local processes (`mainsail demo …`).

- `drift`: normal then drifted traffic → drift alert → retraining run;
- `loop`: the whole lifecycle closing on itself, ending in a promotion (or a rollback);
- `churn`: the churn model, reference and traffic the demos, tests and benchmarks share.
"""
