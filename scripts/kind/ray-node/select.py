"""Copy the distributions a bare Ray node needs (`ray[default]` and its dependencies, as the
pipeline image pins them) from the pipeline image's venv into a new venv at DEST.

Run inside the pipeline image (its Python and venv), by scripts/kind/ray-node/Dockerfile. Each
distribution's files come from its RECORD, so nothing else of the venv (torch, the CUDA
libraries, Mainsail) is copied.
"""

from __future__ import annotations

import importlib.metadata as md
import shutil
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOTS = ["ray[default]"]


def closure(roots: list[str]) -> dict[str, md.Distribution]:
    seen: dict[str, set[str]] = {}
    dists: dict[str, md.Distribution] = {}
    stack = [Requirement(r) for r in roots]
    while stack:
        req = stack.pop()
        name = canonicalize_name(req.name)
        extras = set(req.extras)
        if name in seen and extras <= seen[name]:
            continue
        seen.setdefault(name, set()).update(extras)
        dist = dists.setdefault(name, md.distribution(req.name))
        for line in dist.requires or []:
            dep = Requirement(line)
            wanted = dep.marker is None or any(
                dep.marker.evaluate({"extra": e}) for e in (seen[name] | {""})
            )
            if wanted:
                stack.append(dep)
    return dists


def main(dest: str) -> int:
    venv = Path(sys.prefix)
    out = Path(dest)
    for name, dist in sorted(closure(ROOTS).items()):
        for entry in dist.files or []:
            src = Path(dist.locate_file(entry)).resolve()
            if not src.is_file() or venv not in src.parents:
                continue
            target = out / src.relative_to(venv)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
            if src.suffix == ".py":  # its byte-code, compiled at build time (read-only root)
                for pyc in (src.parent / "__pycache__").glob(f"{src.stem}.*.pyc"):
                    (target.parent / "__pycache__").mkdir(exist_ok=True)
                    shutil.copy2(pyc, target.parent / "__pycache__" / pyc.name)
        print(name, dist.version)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
