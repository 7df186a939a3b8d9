"""Check the Depth Anything V2 Space: ``python -m preprocess.check_depth_api [IMAGE] [--space ID_OR_URL]``.

Connects (same checks as ``generate_depth --backend space``), prints the endpoint's API, sends one
image (a generated 64x48 gradient if none is given) and prints what came back: types, sizes, value range.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from preprocess.backends import DEFAULT_SPACE
from preprocess.backends.space import ENDPOINT, SpaceBackend
from preprocess.errors import S3dgsError


def describe(item: object) -> str:
    """One line about one returned output."""
    if isinstance(item, dict):
        return f"file {item.get('orig_name') or Path(str(item.get('path'))).name} ({item.get('size')} bytes)"
    if isinstance(item, (list, tuple)):
        return f"{type(item).__name__} of {len(item)}: [" + ", ".join(describe(x) for x in item) + "]"
    return f"{type(item).__name__} {item!r}"[:120]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m preprocess.check_depth_api", description=__doc__.split("\n")[0])
    parser.add_argument("image", nargs="?", help="image to send (default: a generated 64x48 gradient)")
    parser.add_argument("--space", default=DEFAULT_SPACE, help="Space id or URL (default %(default)s)")
    parser.add_argument("--hf-token", default=None, help="Hugging Face token (default: $HF_TOKEN for Space ids)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="s3dgs-api-") as tmp:
        image = Path(args.image) if args.image else Path(tmp) / "gradient.png"
        if not args.image:
            x = np.linspace(0, 255, 64, dtype=np.float32)
            Image.fromarray(np.repeat(np.stack([x, x[::-1], x], -1)[None], 48, 0).astype(np.uint8)).save(image)
        elif not image.is_file():
            print(f"error: {image}: no such image file", file=sys.stderr)
            return 2
        backend = SpaceBackend(args.space, args.hf_token, retries=1)
        try:
            with backend:
                print(f"connected to {args.space}")
                info = backend.client.view_api(print_info=False, return_format="dict")["named_endpoints"][ENDPOINT]
                print(f"{ENDPOINT}: inputs " + json.dumps([(p.get("label"), p.get("component"))
                                                           for p in info["parameters"]]))
                for i, r in enumerate(info["returns"]):
                    print(f"  output {i}: {r.get('component')} {r.get('label')!r} -> {r['python_type']['type']}")
                upload, size = backend._upload_file(image)
                job = backend.client.submit(image=_handle(upload), api_name=ENDPOINT)
                outputs = job.result(timeout=backend.timeout_s)
                print(f"sent {image.name} ({size[1]}x{size[0]}); got {type(outputs).__name__} of {len(outputs)}:")
                for i, item in enumerate(outputs):
                    print(f"  output {i}: {describe(item)}")
                for i in (1, 2):
                    arr = backend._fetch(outputs[i])
                    if arr is None:
                        print(f"  output {i}: not a single-channel PNG")
                        continue
                    print(f"  output {i}: {arr.dtype} {arr.shape[1]}x{arr.shape[0]}, values {arr.min()}..{arr.max()}, "
                          f"{len(np.unique(arr))} levels")
        except S3dgsError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        except Exception as e:  # the point of this tool is to show what the Space does; say it in one line
            print(f"error: the call failed: {e.__class__.__name__}: {(str(e).splitlines() or [''])[0][:200]}",
                  file=sys.stderr)
            return 1
    return 0


def _handle(path: Path) -> object:
    from gradio_client import handle_file

    return handle_file(str(path))


if __name__ == "__main__":
    sys.exit(main())
