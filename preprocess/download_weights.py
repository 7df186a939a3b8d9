"""Download depth model weights.

``python -m preprocess.download_weights --all | --model NAME ... | --list [--dest DIR]``.

Names, aliases and repos are in :data:`preprocess.weights.MODELS` (``--list`` prints them).
Transformers models go to the Hugging Face cache; Video Depth Anything checkpoints to
``<dest>/<name>.pth`` (default ``$S3DGS_CHECKPOINT_ROOT`` or ``~/.cache/s3dgs/checkpoints``).
"""

from __future__ import annotations

import argparse
import sys

from preprocess.errors import S3dgsError
from preprocess.weights import MODELS, download, is_downloaded, resolve, resolve_root


def format_table(dest: str | None = None) -> str:
    """The model table as text: name, aliases, repo, file, whether it is already here."""
    rows = [("name", "aliases", "repo", "file", "here")]
    for e in MODELS:
        rows.append((e.name, ",".join(e.aliases), e.repo, e.filename or "(HF cache)",
                     "yes" if is_downloaded(e, dest) else "no"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines + [f"checkpoint root: {resolve_root(dest)}"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m preprocess.download_weights", description=__doc__.split("\n")[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--all", action="store_true", help="every model in the table")
    what.add_argument("-m", "--model", nargs="+", action="extend", metavar="NAME",
                      help="name, alias (vits, metric_vitb, da2-small, ...) or repo id; repeatable")
    what.add_argument("--list", action="store_true", help="print the table and exit")
    parser.add_argument("--dest", help="checkpoint root for .pth files (default: $S3DGS_CHECKPOINT_ROOT "
                                       "or ~/.cache/s3dgs/checkpoints)")
    args = parser.parse_args(argv)
    if args.list:
        print(format_table(args.dest))
        return 0
    try:
        entries = list(MODELS) if args.all else list(dict.fromkeys(resolve(n) for n in args.model))
    except S3dgsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    failed = 0
    for entry in entries:
        if is_downloaded(entry, args.dest):
            print(f"already have {entry.name}")
            continue
        try:
            path = download(entry, args.dest)
        except S3dgsError as e:
            print(f"error: {e}", file=sys.stderr)
            failed += 1
            continue
        print(f"downloaded {entry.name} -> {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
