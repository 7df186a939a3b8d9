"""Point-cloud CSV export: ``write_point_csv`` against row-by-row Python formatting (the previous writer).

One synthetic 1280x720 frame (inverse depth 0.1..20, random colours), written alternately by both writers
in the same process (``--repeats`` rounds), atomically to a temp folder, as the tool does; the files must
be byte-identical. Prints each writer's best time and the ratio.

Usage: ``python benchmarks/bench_point_csv.py [--size 1280x720] [--repeats 5] [--labels]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from preprocess.atomic_io import atomic_path  # noqa: E402
from preprocess.video_depth.pointcloud import back_project, write_point_csv  # noqa: E402
from preprocess.video_depth.regions import RegionLabels  # noqa: E402


def python_rows(path: Path, value: np.ndarray, rgb: np.ndarray, fx: float, fy: float,
                labels: np.ndarray | None) -> None:
    """The previous writer: ``"%.6f"``/``"%d"`` per row, 65536 rows per write; ``labels`` object ``[H, W]`` of
    ``str | None`` (its label input)."""
    z = value.astype(np.float64).ravel()
    x, y = (c.ravel() for c in back_project(value.astype(np.float64), fx, fy))
    columns = [x, y, z, z] + ([] if labels is None else [labels.ravel()]) + list(rgb.reshape(-1, 3).T.astype(np.int64))
    line = ",".join(["%.6f"] * 4 + ([] if labels is None else ["%s"]) + ["%d"] * 3) + "\n"
    header = "x,y,z,intensity" + ("" if labels is None else ",region") + ",red,green,blue\n"
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(header)
        for i in range(0, len(z), 65536):
            chunk = [c[i:i + 65536].tolist() for c in columns]
            if labels is not None:
                chunk[4] = ["" if s is None else '"' + s.replace('"', '""') + '"' for s in chunk[4]]
            f.write("".join(line % row for row in zip(*chunk)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--labels", action="store_true", help="add a region column (two labels)")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    rng = np.random.default_rng(0)
    value = rng.uniform(0.1, 20, (height, width)).astype(np.float32)
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    labels, label_objects = None, None
    if args.labels:
        ids = np.zeros((height, width), np.int32)
        ids[: height // 2, : width // 2], ids[height // 2:, width // 2:] = 1, 2
        labels = RegionLabels(ids, (None, "mouse", 'nest "A"'))
        label_objects = np.asarray(labels.names, dtype=object)[ids]
    times: dict[str, list[float]] = {"python rows": [], "write_point_csv": []}
    with tempfile.TemporaryDirectory() as tmp:
        new, old = Path(tmp) / "new.csv", Path(tmp) / "old.csv"
        write_point_csv(new, value, rgb, 470.4, 470.4, labels)  # compiles the kernel (cached on disk)
        for _ in range(args.repeats):
            start = time.perf_counter()
            python_rows(old, value, rgb, 470.4, 470.4, label_objects)
            times["python rows"].append(time.perf_counter() - start)
            start = time.perf_counter()
            write_point_csv(new, value, rgb, 470.4, 470.4, labels)
            times["write_point_csv"].append(time.perf_counter() - start)
        same = old.read_bytes() == new.read_bytes()
        size = new.stat().st_size
    best = {k: min(v) for k, v in times.items()}
    print(f"{width}x{height} frame{' with labels' if labels is not None else ''}, {size / 1e6:.1f} MB, "
          f"best of {args.repeats} (interleaved): python rows {best['python rows']:.3f} s, write_point_csv "
          f"{best['write_point_csv']:.3f} s = {best['python rows'] / best['write_point_csv']:.1f}x faster; "
          f"byte-identical: {same}")
    if not same:
        raise SystemExit("the files differ")


if __name__ == "__main__":
    main()
