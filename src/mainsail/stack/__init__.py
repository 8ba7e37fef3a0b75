"""The local stack: SeaweedFS, MLServer (champion, challenger), the router and optional Feast,
started and stopped as processes on loopback (`mainsail up / status / down`).

The process list is pluggable (:func:`mainsail.stack.providers.register_provider`); the state
file under `stack.data_dir` records what `up` started so `down` stops exactly that.
"""

from __future__ import annotations

from mainsail.stack.process import ProcessSpec, StackError

__all__ = ["ProcessSpec", "StackError"]
