"""The router's Prometheus metrics, one registry per router app.

Every series carries `variant` (champion, challenger, mirror), `model` (the upstream model name)
and `version` (the registry version the variant serves):

- `mainsail_router_requests_total{variant,model,version,code}`: requests answered by a variant,
  by HTTP status code (mirrored copies count under variant="mirror").
- `mainsail_router_errors_total{variant,model,version,reason}`: failed requests; reason is
  `connect`, `response`, `timeout` (no usable answer), `status_4xx` or `status_5xx`.
- `mainsail_router_request_duration_seconds{variant,model,version}`: histogram of the time the
  upstream took, measured in the router.
- `mainsail_router_predictions_total{variant,model,version,output,value}`: predicted classes
  (integer, boolean and string outputs), one count per predicted element.
- `mainsail_router_prediction_value{variant,model,version,output}`: histogram of predicted
  numbers (floating-point outputs: regression values, probabilities).
- `mainsail_router_variant_weight{variant,model,version}`: current traffic weight.
- `mainsail_router_variant_healthy{variant,model,version}`: 1 in rotation, 0 taken out.
- `mainsail_router_retries_total{variant,reason}`: requests re-sent to another variant after
  `variant` failed without an answer.
- `mainsail_router_failovers_total{variant,model,version,assigned,reason}`: requests answered by
  `variant` in place of the variant they were assigned to (`assigned`), and why: that variant
  was out of rotation (`out_of_rotation`) or failed without an answer (`connect`, `response`,
  `timeout`, `model_not_served`). The A/B analysis keeps them on the assigned side.
- `mainsail_router_rejected_total{reason}`: requests the router refused itself (`bad_request`,
  `unknown_model`, `too_large`, `no_variant`).
- `mainsail_router_mirror_dropped_total`: mirror copies dropped because too many were in flight.
"""

from __future__ import annotations

import json
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
VALUE_BUCKETS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 10.0, 100.0, 1000.0)

# Class labels are bounded so a model that returns free text cannot blow up the series count.
MAX_CLASSES_PER_OUTPUT = 50
MAX_LABEL_LEN = 64
MAX_ELEMENTS_COUNTED = 1000

_CLASS_TYPES = frozenset(
    {"BOOL", "BYTES", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}
)
_FLOAT_TYPES = frozenset({"FP16", "FP32", "FP64"})


class RouterMetrics:
    """Counters and histograms of one router."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ["variant", "model", "version"]
        self.requests = Counter(
            "mainsail_router_requests_total",
            "Requests answered by a variant, by status code.",
            [*labels, "code"],
            registry=self.registry,
        )
        self.errors = Counter(
            "mainsail_router_errors_total",
            "Failed requests by variant and reason.",
            [*labels, "reason"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "mainsail_router_request_duration_seconds",
            "Upstream latency seen by the router.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.predictions = Counter(
            "mainsail_router_predictions_total",
            "Predicted classes by variant and output.",
            [*labels, "output", "value"],
            registry=self.registry,
        )
        self.values = Histogram(
            "mainsail_router_prediction_value",
            "Predicted numbers by variant and output.",
            [*labels, "output"],
            buckets=VALUE_BUCKETS,
            registry=self.registry,
        )
        self.weight = Gauge(
            "mainsail_router_variant_weight",
            "Traffic weight of a variant.",
            labels,
            registry=self.registry,
        )
        self.healthy = Gauge(
            "mainsail_router_variant_healthy",
            "1 when a variant is in rotation.",
            labels,
            registry=self.registry,
        )
        self.retries = Counter(
            "mainsail_router_retries_total",
            "Requests re-sent elsewhere after a variant failed without an answer.",
            ["variant", "reason"],
            registry=self.registry,
        )
        self.failovers = Counter(
            "mainsail_router_failovers_total",
            "Requests answered by another variant than the one they were assigned to.",
            [*labels, "assigned", "reason"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "mainsail_router_rejected_total",
            "Requests refused by the router itself.",
            ["reason"],
            registry=self.registry,
        )
        self.mirror_dropped = Counter(
            "mainsail_router_mirror_dropped_total",
            "Mirror copies dropped because too many were in flight.",
            registry=self.registry,
        )
        self._classes: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        self._value_children: dict[tuple[str, str, str, str], Any] = {}
        # Label lookups cost a lock and a tuple per call; the hot path reuses the children.
        self._children: dict[tuple[str, ...], Any] = {}

    def child(self, metric: Counter | Histogram, *labels: str) -> Any:
        """`metric.labels(*labels)`, cached."""
        key = (metric._name, *labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def forget(self, variant: str, model: str, version: str) -> None:
        """Drop cached children of a variant whose version changed (its series stay)."""
        for key in [k for k in self._children if k[1:4] == (variant, model, version)]:
            del self._children[key]
        for key4 in [k for k in self._value_children if k[:3] == (variant, model, version)]:
            del self._value_children[key4]

    def observe_predictions(self, variant: str, model: str, version: str, body: bytes) -> None:
        """Count the classes / values of a V2 response body; ignores bodies it cannot read."""
        try:
            payload = json.loads(body)
        except ValueError:
            return
        outputs = payload.get("outputs") if isinstance(payload, dict) else None
        if not isinstance(outputs, list):
            return
        for out in outputs:
            if not isinstance(out, dict):
                continue
            name, data = out.get("name"), out.get("data")
            if not isinstance(name, str) or not isinstance(data, list):
                continue
            datatype = out.get("datatype")
            if datatype in _CLASS_TYPES:
                self._count_classes(variant, model, version, name[:MAX_LABEL_LEN], _flat(data))
            elif datatype in _FLOAT_TYPES:
                key = (variant, model, version, name[:MAX_LABEL_LEN])
                hist = self._value_children.get(key)
                if hist is None:
                    hist = self._value_children[key] = self.values.labels(*key)
                for value in _flat(data):
                    if type(value) is float or (
                        isinstance(value, int | float) and not isinstance(value, bool)
                    ):
                        hist.observe(float(value))

    def _count_classes(
        self, variant: str, model: str, version: str, name: str, flat: list[Any]
    ) -> None:
        key = (variant, model, version, name)
        # label -> counter child of the classes seen so far (at most MAX_CLASSES_PER_OUTPUT).
        seen = self._classes.get(key)
        if seen is None:
            seen = self._classes[key] = {}
        for value in flat:
            label = str(value)[:MAX_LABEL_LEN]
            counter = seen.get(label)
            if counter is None:
                if len(seen) >= MAX_CLASSES_PER_OUTPUT:
                    label = "__other__"  # not cached: free text must not grow this dict
                    counter = self.predictions.labels(*key, label)
                else:
                    counter = seen[label] = self.predictions.labels(*key, label)
            counter.inc()


def _flat(data: list[Any]) -> list[Any]:
    """The first MAX_ELEMENTS_COUNTED scalars of a (nested) data list, in order."""
    head = data[:MAX_ELEMENTS_COUNTED]
    for item in head:
        if isinstance(item, list):
            break
    else:
        return head  # already flat: the common case, no copy element by element
    out: list[Any] = []
    stack = [data]
    while stack and len(out) < MAX_ELEMENTS_COUNTED:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            out.append(item)
    return out
