"""Repack a Ray wheel without the parts a Ray Train / Tune run on one machine never loads.

Why: the device machine (see scripts/device/pack_gpu_check.sh) has no Ray and no internet, so
Ray travels as a wheel inside the working tree, which may weigh 64 MiB in all. The stock Ray
2.60.0 wheel is 79 MB; most of that is the Java worker jar and the dashboard's web client.
Dropped here (nothing in ray core, ray.train or ray.tune imports them; the dry run in
pack_gpu_check.sh proves it on this machine):

- ray/jars/                   Java workers (ray_dist.jar, 31 MB compressed)
- ray/dashboard/client/build/ the dashboard's web front end (include_dashboard=False here)
- ray/rllib/, ray/serve/, ray/llm/  libraries this project does not use

The native binaries (_raylet.so, gcs_server, raylet) are copied untouched, symbol tables
included, so a crash there still prints a readable stack. RECORD loses the dropped files'
lines, and entry_points.txt loses the `serve` and `rllib` console scripts (with its RECORD
hash updated), so `pip install` accepts the result as an ordinary wheel.

Usage: python strip_ray_wheel.py SRC_WHEEL OUT_DIR   (writes OUT_DIR/<same file name>)
"""

from __future__ import annotations

import base64
import hashlib
import sys
import zipfile
from pathlib import Path

DROP = (
    "ray/jars/",
    "ray/dashboard/client/build/",
    "ray/rllib/",
    "ray/serve/",
    "ray/llm/",
)
DROP_MODULES = tuple(p.replace("/", ".") for p in DROP)


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return f"sha256={digest.decode()},{len(data)}"


def _keep_entry_point(line: str) -> bool:
    if "=" not in line:
        return True
    target = line.split("=", 1)[1].strip()
    return not (target + ".").startswith(DROP_MODULES)


def strip(src: Path, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    dst = out_dir / src.name
    with zipfile.ZipFile(src) as zin:
        infos = [i for i in zin.infolist() if not i.filename.startswith(DROP)]
        dist_info = next(
            i.filename.split("/")[0]
            for i in infos
            if i.filename.split("/")[0].endswith(".dist-info")
        )
        record_name = f"{dist_info}/RECORD"
        entry_name = f"{dist_info}/entry_points.txt"
        kept = {i.filename for i in infos}
        payload: dict[str, bytes] = {}
        for info in infos:
            payload[info.filename] = zin.read(info)
        if entry_name in payload:
            lines = payload[entry_name].decode().splitlines(keepends=True)
            payload[entry_name] = "".join(ln for ln in lines if _keep_entry_point(ln)).encode()
        record = []
        for line in payload[record_name].decode().splitlines():
            path = line.rsplit(",", 2)[0]
            if path not in kept:
                continue
            if path == entry_name:
                line = f"{path},{_record_hash(payload[entry_name])}"
            record.append(line)
        payload[record_name] = ("\n".join(record) + "\n").encode()
        with zipfile.ZipFile(dst, "w") as zout:
            for info in infos:
                if info.filename == record_name:
                    continue
                zout.writestr(info, payload[info.filename], zipfile.ZIP_DEFLATED, 9)
            zout.writestr(zin.getinfo(record_name), payload[record_name], zipfile.ZIP_DEFLATED, 9)
    dropped = len(zin.infolist()) - len(infos)
    print(
        f"{src.name}: {src.stat().st_size / 1e6:.1f} MB -> {dst.stat().st_size / 1e6:.1f} MB "
        f"({dropped} files dropped)"
    )
    return dst


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    strip(Path(sys.argv[1]), Path(sys.argv[2]))
