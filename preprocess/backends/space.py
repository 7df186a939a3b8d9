"""The public Hugging Face Space ``depth-anything/Depth-Anything-V2`` (or any copy of it) through gradio_client.

The Space runs Depth Anything V2 Large and returns, per image, a 16-bit PNG of the model's relative
inverse depth cast to uint16 (``astype('uint16')``: integer-truncated, typically a few hundred levels).
We fetch only that file (the 8-bit per-image-normalised gray map is the fallback, with a warning),
record its integer min/max and let the driver rescale it to the full 16-bit range.

Failure handling: the connection and the endpoint's signature are checked once before any image;
transient errors (network, queue, rate limit, per-image deadline) are retried with exponential
back-off; a GPU-quota answer stops the run (resumable); any other app error is retried once and
then marks that image failed. No token is sent unless one was given (``--hf-token``, or
``HF_TOKEN``/``HF_HUB_TOKEN`` for a Space id, never for a URL).
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from preprocess.backends import BackendError, BackendOptions, DepthBackend, DepthResult, RunStopped
from preprocess.errors import S3dgsError
from preprocess.images import ImageReadError, open_image, to_rgb8

ENDPOINT = "/on_submit"
TRANSIENT_IN_A_ROW = 3  # this many images lost to network errors in a row: the Space is gone, stop


def is_url(space: str) -> bool:
    return space.startswith(("http://", "https://"))


def space_token(space: str, token: str | None) -> str | bool:
    """The token to send: the given one, else HF_TOKEN/HF_HUB_TOKEN for a Space id, else ``False`` (none)."""
    if token:
        return token
    if not is_url(space):
        return os.environ.get("HF_TOKEN") or os.environ.get("HF_HUB_TOKEN") or False
    return False


def is_transient(error: BaseException) -> bool:
    """Errors worth retrying: network, dropped result stream, deadline, full queue, rate limit."""
    import httpx
    from gradio_client.utils import QueueError, TooManyRequestsError

    return (isinstance(error, (httpx.TransportError, concurrent.futures.CancelledError, TimeoutError,
                               QueueError, TooManyRequestsError, ConnectionError))
            or (isinstance(error, KeyError) and error.args == ("unexpected_error",)))


def check_api(info: dict[str, Any], space: str) -> None:
    """Raise :class:`BackendError` unless ``/on_submit`` takes one image and returns three outputs, the last a file."""
    endpoint = info.get("named_endpoints", {}).get(ENDPOINT)
    problem = None
    if endpoint is None:
        problem = f"no {ENDPOINT} endpoint (has: {', '.join(info.get('named_endpoints', {})) or 'none'})"
    elif len(endpoint.get("parameters", [])) != 1:
        problem = f"{ENDPOINT} takes {len(endpoint['parameters'])} inputs, expected 1 image"
    elif (len(endpoint.get("returns", [])) != 3
          or endpoint["returns"][2].get("python_type", {}).get("type") != "filepath"):
        problem = f"{ENDPOINT} returns {len(endpoint.get('returns', []))} outputs, expected 3 ending with a file"
    if problem:
        raise BackendError(f"Space {space}: its API changed ({problem}); use --backend transformers, "
                           "or report it to the s3dgs issue tracker")


def decode_png16(data: bytes) -> np.ndarray | None:
    """PNG bytes -> 2-D array (uint16 or uint8), ``None`` if not a single-channel PNG."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
    return img if img is not None and img.ndim == 2 else None


class SpaceBackend(DepthBackend):
    """Depth Anything V2 Large on a Gradio Space, one image per request, sequentially."""

    name = "space"

    def __init__(self, space: str, token: str | None = None, timeout_s: float = 180.0, retries: int = 5,
                 backoff_s: float = 0.5, connect_timeout_s: float = 120.0) -> None:
        super().__init__(space)
        self.token = space_token(space, token)
        self.timeout_s, self.retries, self.backoff_s = timeout_s, retries, backoff_s
        self.connect_timeout_s = connect_timeout_s
        self.client: Any = None
        self.tmp: Path | None = None

    @classmethod
    def from_options(cls, options: BackendOptions) -> "SpaceBackend":
        return cls(options.space, options.hf_token)

    @property
    def extra(self) -> dict[str, Any]:
        return {**super().extra, "space": self.model, "endpoint": ENDPOINT,
                "upstream_model": "Depth Anything V2 Large (vitl), input_size 518",
                "raw_output": "the Space's 16-bit raw PNG: the model's float output cast to uint16 (integer-truncated, "
                              "typically a few hundred levels); min/max per image are those integers"}

    def open(self) -> None:
        os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")  # gradio_client would otherwise ping huggingface.co
        from gradio_client import Client

        box: dict[str, Any] = {}

        def connect() -> None:
            try:
                box["client"] = Client(self.model, token=self.token, verbose=False, download_files=False,
                                       httpx_kwargs={"timeout": 60.0})
            except BaseException as e:  # handed to the caller's thread
                box["error"] = e

        thread = threading.Thread(target=connect, daemon=True)
        thread.start()
        thread.join(self.connect_timeout_s)
        if thread.is_alive():
            raise BackendError(f"Space {self.model} did not answer within {self.connect_timeout_s:.0f} s (building or "
                               "waking up?); try again in a few minutes or use --backend transformers")
        if "error" in box:
            raise BackendError(self._connect_message(box["error"]))
        self.client = box["client"]
        try:
            check_api(self.client.view_api(print_info=False, return_format="dict"), self.model)
        except BackendError:
            self.close()
            raise
        self.tmp = Path(tempfile.mkdtemp(prefix="s3dgs-space-"))

    def _connect_message(self, e: BaseException) -> str:
        from huggingface_hub.errors import OfflineModeIsEnabled

        if isinstance(e, OfflineModeIsEnabled):
            return (f"Space {self.model}: HF_HUB_OFFLINE is set, so the Hub cannot be reached; unset it, pass the "
                    "Space's URL, or use --backend transformers")
        first = (str(e).strip().splitlines() or [""])[0][:200]
        if isinstance(e, ValueError) and "invalid state" in first:
            return f"Space {self.model} is not running ({first}); try later or use --backend transformers"
        return (f"cannot reach Space {self.model} ({e.__class__.__name__}: {first}); check the id/URL and the "
                "internet connection, or use --backend transformers")

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    def predict(self, paths: Sequence[Path]) -> Iterator[DepthResult]:
        transient_in_a_row = 0
        for path in paths:
            try:
                upload, size = self._upload_file(path)
            except ImageReadError as e:
                yield DepthResult(path, None, error=str(e))
                continue
            try:
                depth, info = self._predict_one(path, upload, size)
            except _ImageFailed as e:
                transient_in_a_row = transient_in_a_row + 1 if e.transient else 0
                if transient_in_a_row >= TRANSIENT_IN_A_ROW:
                    raise RunStopped(f"Space {self.model} stopped answering ({e}); done images are kept, rerun "
                                     "the same command later to resume") from None
                yield DepthResult(path, None, error=str(e))
                continue
            finally:
                if upload != path:
                    upload.unlink(missing_ok=True)
            transient_in_a_row = 0
            yield DepthResult(path, depth, info=info)

    def _upload_file(self, path: Path) -> tuple[Path, tuple[int, int]]:
        """The file to send and the expected output ``(H, W)``: the original when the Space would see the same
        8-bit RGB pixels, else a lossless PNG of the pixels :func:`load_rgb` gives (stored order without the EXIF
        Orientation tag, which the Space's decoder might apply; 16-bit, alpha and palette converted)."""
        im = open_image(path)
        with Image.open(path) as raw:
            as_is = raw.format in ("JPEG", "PNG") and raw.mode == "RGB" and raw.getexif().get(0x0112, 1) == 1
        if as_is:
            return path, (im.height, im.width)
        rgb = to_rgb8(im)
        assert self.tmp is not None
        out = self.tmp / f"{path.stem}.png"
        Image.fromarray(rgb).save(out)
        return out, rgb.shape[:2]

    def _predict_one(self, path: Path, upload: Path, size: tuple[int, int]) -> tuple[np.ndarray, dict[str, Any]]:
        """Call the Space with retries; return the float map ``[H, W]`` and its meta info."""
        from gradio_client import handle_file
        from gradio_client.exceptions import AppError

        app_errors = 0
        last: BaseException | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:  # arguments are matched to the endpoint's signature here, before anything is sent
                job = self.client.submit(image=handle_file(str(upload)), api_name=ENDPOINT)
            except (ValueError, TypeError) as e:
                raise BackendError(f"Space {self.model}: the call was refused ({e}); its API probably changed, "
                                   "use --backend transformers") from None
            try:
                self.calls += 1
                outputs = job.result(timeout=self.timeout_s)
                return self._read_outputs(path, outputs, size)
            except AppError as e:
                text = str(e)
                if "quota" in text.lower():
                    raise RunStopped(f"the Space's GPU quota is used up ({text.strip()}); done images are kept: "
                                     "rerun the same command later to resume, pass --hf-token for a larger quota, "
                                     "or use --backend transformers") from None
                app_errors += 1
                last = e
                if app_errors > 1:
                    break
            except (ValueError, TypeError) as e:  # an answer this image's outputs cannot be read from
                raise _ImageFailed(f"{path}: the Space's answer is unreadable ({e.__class__.__name__}: "
                                   f"{(str(e).strip().splitlines() or [''])[0][:200]})", transient=False) from None
            except Exception as e:
                if not is_transient(e):
                    raise
                job.cancel()
                last = e
        detail = (str(last).strip().splitlines() or [""])[0][:200] if last is not None else ""
        raise _ImageFailed(f"{path}: the Space failed on this image ({last.__class__.__name__}: {detail})",
                           transient=not isinstance(last, AppError))

    def _read_outputs(self, path: Path, outputs: Any, size: tuple[int, int]) -> tuple[np.ndarray, dict[str, Any]]:
        info: dict[str, Any] = {"output": "raw16"}
        raw = self._fetch(outputs[2])
        if raw is None or raw.dtype != np.uint16:
            raw = self._fetch(outputs[1])
            if raw is None:
                raise _ImageFailed(f"{path}: the Space returned no readable depth PNG", transient=False)
            info["output"] = "gray8"
            info["warning"] = "16-bit raw output missing; used the 8-bit per-image-normalised map"
        depth = raw.astype(np.float32)
        if depth.shape != size:
            info["resized_from"] = [depth.shape[1], depth.shape[0]]
            depth = cv2.resize(depth, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        return depth, info

    def _fetch(self, item: Any) -> np.ndarray | None:
        """Download one output file (a FileData dict, or a local path) and decode it."""
        import httpx

        if isinstance(item, str):
            return decode_png16(Path(item).read_bytes()) if Path(item).is_file() else None
        if not isinstance(item, dict) or not item.get("url"):
            return None
        response = httpx.get(item["url"], headers=self.client.headers, cookies=self.client.cookies,
                             follow_redirects=True, timeout=60.0)
        if response.is_error:  # the file is gone or refused: let the caller fall back (network errors raise)
            return None
        return decode_png16(response.content)


class _ImageFailed(S3dgsError):
    """One image could not be processed; ``transient`` if the cause was the network, not the image."""

    def __init__(self, message: str, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient
