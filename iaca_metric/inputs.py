"""Image loading and input validation shared by every public entry point.

Everything that accepts user images (the IACA scorer, the loss, the reference
metrics, the baselines, the command line) goes through this module so that the
same input is always decoded, scaled and rejected in the same way.

Conventions used throughout the package:

* Tensors are ``float`` NCHW (batch, channel, height, width) RGB in ``[0, 1]``.
* Every validation failure raises :class:`InputError`, whose message names the
  problem *and* the fix. Nothing is silently clipped, guessed or converted in a
  way that changes pixel values beyond the documented scaling.
"""

from __future__ import annotations

import math
import numbers
import os
import re
import struct
import warnings
from typing import Literal, Sequence, Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = [
    "MIN_SIDE",
    "InputError",
    "ImageNotFoundError",
    "GrayscaleMode",
    "ImageLike",
    "load_image",
    "to_tensor",
    "to_batch",
    "check_pair",
    "check_min_size",
]

#: Smallest height/width (pixels) the IACA network accepts. Its deepest stage
#: has stride 32, so a 32x32 image is the smallest that still leaves at least
#: one pixel in that stage's feature map.
MIN_SIDE: int = 32

# Absolute tolerance (in units of the [0, 1] range) for range checks: float
# arithmetic such as x / 255 * 255 / 255 can land a hair outside [0, 1].
_RANGE_TOL = 1e-6

GrayscaleMode = Literal["error", "replicate"]
ImageLike = Union[str, "os.PathLike[str]", Image.Image, np.ndarray, torch.Tensor]

# Pillow modes holding one grey channel, split by how the samples are stored.
_GRAY_8BIT_MODES = {"1", "L"}
_GRAY_16BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}
_GRAY_ALPHA_MODES = {"LA", "La"}


class InputError(ValueError):
    """An input image or argument that cannot be scored as given.

    The message always says what is wrong and how to fix it.
    """


class ImageNotFoundError(InputError, FileNotFoundError):
    """An image path that does not exist.

    Subclasses both :class:`InputError` and :class:`FileNotFoundError` so that
    callers can catch whichever they already handle.
    """


# ---------------------------------------------------------------------------
# small argument checks
# ---------------------------------------------------------------------------


def check_int(name: str, value: object, lo: int, hint: str = "") -> int:
    """Validate an integer option: any integer type (numpy's too, e.g. a size computed with numpy), but
    not bool and not float, and ``>= lo``. Returns it as a plain ``int`` (so provenance stays JSON-writable);
    raises :class:`InputError` naming the option, the bound and ``hint`` (e.g. what the value means)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise InputError(f"{name} must be an int >= {lo}, got {value!r}{hint}")
    value = int(value)
    if value < lo:
        raise InputError(f"{name} must be >= {lo}, got {value}{hint}")
    return value


def _check_grayscale_option(grayscale: str) -> None:
    # The type first: `in` on a non-string (e.g. a numpy array) could raise its own error or match oddly.
    if not isinstance(grayscale, str) or grayscale not in ("error", "replicate"):
        raise InputError(
            f"grayscale must be 'error' or 'replicate', got {grayscale!r}"
        )


def _check_data_range(data_range: float) -> float:
    if isinstance(data_range, (bool, np.bool_)) or isinstance(data_range, str):
        # float(True) == 1.0 and float("255") == 255.0 would pass silently; both are caller mistakes
        raise InputError(
            f"data_range must be a positive number (e.g. 1.0 or 255), got {data_range!r}"
        )
    try:
        value = float(data_range)
    except (TypeError, ValueError):
        raise InputError(
            f"data_range must be a positive number (e.g. 1.0 or 255), got {data_range!r}"
        ) from None
    if not np.isfinite(value) or value <= 0:
        raise InputError(
            f"data_range must be a positive finite number (e.g. 1.0 or 255), got {data_range!r}"
        )
    return value


def _grayscale_message(what: str) -> str:
    return (
        f"{what} is a grayscale (single-channel) image, but scores are defined on "
        "RGB colour images; pass grayscale='replicate' to copy the grey channel "
        "into R, G and B, or convert the image to RGB yourself"
    )


# ---------------------------------------------------------------------------
# decoding with Pillow
# ---------------------------------------------------------------------------


def _warn_if_16bit_colour(im: Image.Image, what: str) -> None:
    """Warn when Pillow is about to reduce a 16-bit colour file to 8 bits.

    Pillow has no 16-bit-per-channel RGB mode: it decodes such PNG/TIFF files to
    8-bit "RGB". We cannot recover the lost bits, but the user should know.
    Must be called before ``im.load()`` (the tile list is emptied by loading).
    """
    for tile in getattr(im, "tile", None) or ():
        args = tile[-1] if not hasattr(tile, "args") else tile.args
        rawmode = args[0] if isinstance(args, tuple) and args else args
        if (
            isinstance(rawmode, str)
            and im.mode in ("RGB", "RGBA")
            and rawmode.startswith(("RGB;16", "RGBA;16"))
        ):
            warnings.warn(
                f"{what} stores 16 bits per colour channel but Pillow decodes "
                "colour images at 8 bits; it is scored at 8-bit precision. Convert "
                "it to a float numpy array yourself (e.g. with imageio/OpenCV, "
                "divided by 65535) to keep the full precision.",
                UserWarning,
                stacklevel=3,
            )
            return


def _pil_to_chw(im: Image.Image, grayscale: str, what: str) -> torch.Tensor:
    """Convert a decoded PIL image to a float32 CHW RGB tensor in [0, 1].

    See :func:`load_image` for the mode rules (alpha, grayscale, 16-bit).
    """
    try:
        im = ImageOps.exif_transpose(im)
    except Exception as exc:  # malformed EXIF: report instead of guessing
        raise InputError(
            f"could not apply the EXIF orientation of {what}: {exc}; strip or fix "
            "the EXIF data (e.g. re-save the image without EXIF)"
        ) from exc

    mode = im.mode
    if mode in _GRAY_ALPHA_MODES:
        # Alpha is dropped, as for RGBA (see load_image).
        im = im.convert("L")
        mode = "L"

    if mode in _GRAY_8BIT_MODES:
        gray = np.asarray(im.convert("L"), dtype=np.uint8)
        arr = gray.astype(np.float32)[None] / np.float32(255.0)
    elif mode in _GRAY_16BIT_MODES:
        # "I" is 32-bit signed; Pillow uses it for 16-bit PNGs in some versions,
        # so we treat it as 16-bit data and refuse values that do not fit.
        raw = np.asarray(im)
        raw = raw.astype(raw.dtype.newbyteorder("="), copy=False)
        if mode == "I" and raw.size and (raw.min() < 0 or raw.max() > 65535):
            raise InputError(
                f"{what} is a 32-bit integer image (PIL mode 'I') with values in "
                f"[{int(raw.min())}, {int(raw.max())}], outside the 16-bit range "
                "[0, 65535]; convert it to float in [0, 1] yourself"
            )
        arr = raw.astype(np.float32)[None] / np.float32(65535.0)
    elif mode == "F":
        arr = np.asarray(im, dtype=np.float32)[None]
    else:
        if mode == "P" and "transparency" in im.info:
            # Going through RGBA avoids Pillow's palette-transparency warning;
            # the alpha is then dropped like any other alpha channel.
            im = im.convert("RGBA")
        try:
            rgb = im.convert("RGB")
        except (ValueError, OSError) as exc:
            raise InputError(
                f"cannot convert {what} from PIL mode {mode!r} to RGB: {exc}; "
                "convert it to RGB yourself (e.g. with PIL.ImageCms) before scoring"
            ) from exc
        arr = np.asarray(rgb, dtype=np.uint8).astype(np.float32) / np.float32(255.0)
        arr = arr.transpose(2, 0, 1)
        return torch.from_numpy(np.ascontiguousarray(arr))

    # single-channel paths
    if grayscale != "replicate":
        raise InputError(_grayscale_message(f"{what} (PIL mode {mode!r})"))
    if mode == "F":
        _check_values(torch.from_numpy(arr), 1.0, what)
    return torch.from_numpy(np.ascontiguousarray(np.repeat(arr, 3, axis=0)))


def _bomb_message(path: str, exc: BaseException | str) -> str:
    text = str(exc)
    found = re.search(r"\((\d+) pixels\)", text)
    pixels = found.group(1) if found else "too many"
    limit = Image.MAX_IMAGE_PIXELS
    return (
        f"refusing to load {path!r}: it has {pixels} pixels, more than Pillow's "
        f"decompression-bomb limit PIL.Image.MAX_IMAGE_PIXELS = {limit}. If you "
        "trust the file, raise the limit before loading, e.g. "
        "`PIL.Image.MAX_IMAGE_PIXELS = <larger number>` (None disables the check); "
        "otherwise downscale the image first"
    )


def load_image(
    path: str | os.PathLike[str], *, grayscale: GrayscaleMode = "error"
) -> torch.Tensor:
    """Read an image file into a float32 CHW RGB tensor in ``[0, 1]``.

    Args:
        path: file path; any format Pillow can read.
        grayscale: what to do with single-channel files (modes ``1``, ``L``,
            ``LA``, ``I;16*``, ``I``, ``F``): ``"error"`` (default) raises
            :class:`InputError`; ``"replicate"`` copies the grey channel to R,
            G and B.

    Returns:
        Tensor of shape ``(3, H, W)``, dtype float32, values in ``[0, 1]``.
        ``H, W`` are after the EXIF orientation has been applied (so a portrait
        photo is returned upright, as viewers show it).

    Rules:
        * 8-bit data is divided by 255; 16-bit grey data (``I;16``, ``I;16B``,
          ``I``) by 65535, so no precision is lost. Pillow decodes 16-bit
          *colour* files at 8 bits; a :class:`UserWarning` says so.
        * Alpha (RGBA, LA, palette with transparency) is **dropped**: we score
          the colour channels as stored, with no compositing. Compositing needs
          an arbitrary background colour, which would change the pixel values
          the enhancement method actually produced and make the score depend on
          that choice; enhancement outputs are opaque in practice.
        * CMYK, YCbCr and other colour modes are converted to RGB by Pillow.

    Raises:
        ImageNotFoundError: the path does not exist (also a FileNotFoundError).
        InputError: unreadable, corrupt or truncated file; image above Pillow's
            decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``; the
            warning zone between 1x and 2x that limit is treated as an error
            too); grayscale with ``grayscale="error"``.
    """
    _check_grayscale_option(grayscale)
    try:
        p = os.fspath(path)
    except TypeError:
        raise InputError(
            f"expected a file path (str or os.PathLike), got {type(path).__name__}"
        ) from None
    if isinstance(p, bytes):
        p = os.fsdecode(p)
    if not os.path.exists(p):
        raise ImageNotFoundError(
            f"image file not found: {p!r} (working directory {os.getcwd()!r}); "
            "check the path and its spelling"
        )
    if os.path.isdir(p):
        raise InputError(f"{p!r} is a directory, not an image file; pass a file path")

    try:
        # Pillow errors above 2x MAX_IMAGE_PIXELS and only *warns* between 1x and 2x; the size check
        # below refuses that zone too, so huge files are refused consistently, not half-loaded. (Not via
        # warnings.catch_warnings: it swaps the process-wide filter list, which is not thread-safe, and
        # with threaded decoding a ('error', DecompressionBombWarning) filter leaked into the process.)
        im = Image.open(p)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(_bomb_message(p, exc)) from exc
    except UnidentifiedImageError as exc:
        raise InputError(
            f"{p!r} is not an image file Pillow can read (unknown format or not an "
            "image at all); check that the path points to a PNG/JPEG/TIFF/... file"
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
        raise InputError(
            f"could not open image {p!r}: {exc}; the file is corrupt or truncated, "
            "re-export or re-download it"
        ) from exc

    with im:
        limit = Image.MAX_IMAGE_PIXELS
        if limit is not None and im.size[0] * im.size[1] > limit:
            raise InputError(_bomb_message(p, f"({im.size[0] * im.size[1]} pixels)"))
        _warn_if_16bit_colour(im, repr(p))
        try:
            im.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise InputError(_bomb_message(p, exc)) from exc
        except (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError) as exc:
            raise InputError(
                f"could not decode image {p!r}: {exc}; the file is corrupt or "
                "truncated, re-export or re-download it"
            ) from exc
        return _pil_to_chw(im, grayscale, repr(p))


# ---------------------------------------------------------------------------
# value checks shared by all input types
# ---------------------------------------------------------------------------


def _range_hint(lo: float, hi: float, data_range: float) -> str:
    """A fix suggestion for values outside [0, data_range], from the observed range."""
    tol = _RANGE_TOL * data_range
    if lo >= -0.05 * data_range and hi <= 1.05 * data_range:
        # a few percent outside: typical of a network output that was not clamped
        return (
            f"values slightly outside [0, {data_range:g}] usually come from an "
            f"enhancement network overshooting: clamp with x.clamp(0, {data_range:g})"
        )
    if lo >= -tol:  # only too large
        if data_range == 1.0 and hi <= 255.0 + 1e-3:
            return "looks like [0, 255] data: divide by 255 or pass data_range=255"
        if data_range in (1.0, 255.0) and hi <= 65535.0 + 1e-3:
            return (
                "looks like 16-bit [0, 65535] data: divide by 65535 or pass "
                "data_range=65535"
            )
    elif data_range == 1.0 and lo >= -1.0 - tol and hi <= 1.0 + tol:
        return "looks like [-1, 1] data (e.g. a tanh output): map it with (x + 1) / 2"
    return f"rescale the data into [0, {data_range:g}] or pass the matching data_range"


def _check_values(t: torch.Tensor, data_range: float, name: str) -> None:
    """Raise InputError for NaN/Inf or values outside [0, data_range].

    Works on a detached view so the check never enters the autograd graph.
    """
    d = t.detach()
    if d.numel() == 0:
        return
    # One reduction pass: min/max are NaN if any value is NaN and +-inf if any is infinite, so finite
    # extremes prove the whole tensor finite. Only a failing tensor is counted in detail.
    lo_t, hi_t = torch.aminmax(d)
    lo, hi = float(lo_t), float(hi_t)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        n_nan = int(torch.isnan(d).sum().item())
        n_inf = int(torch.isinf(d).sum().item())
        parts = []
        if n_nan:
            parts.append(f"NaN at {n_nan} values")
        if n_inf:
            parts.append(f"Inf at {n_inf} values")
        raise InputError(
            f"{name} contains {' and '.join(parts)}; replace/clip non-finite "
            "values (e.g. torch.nan_to_num(x).clamp(0, 1)) before scoring"
        )
    _check_range(lo, hi, data_range, name)


def _check_range(lo: float, hi: float, data_range: float, name: str) -> None:
    tol = _RANGE_TOL * data_range
    if lo < -tol or hi > data_range + tol:
        raise InputError(
            f"{name} has values in [{lo:.6g}, {hi:.6g}] but must lie in "
            f"[0, {data_range:g}] (data_range={data_range:g}); "
            f"{_range_hint(lo, hi, data_range)}"
        )


def _fix_channels(t: torch.Tensor, grayscale: str, name: str) -> torch.Tensor:
    """Bring an NCHW tensor to 3 channels following the documented rules."""
    c = t.shape[1]
    if c == 3:
        return t
    if c == 4:
        # Alpha dropped, no compositing (same rule as load_image).
        return t[:, :3]
    if c == 1:
        if grayscale != "replicate":
            raise InputError(_grayscale_message(f"{name} (shape {tuple(t.shape)})"))
        # repeat (not expand) so later in-place ops cannot alias channels
        return t.repeat(1, 3, 1, 1)
    raise InputError(
        f"{name} has {c} channels (NCHW shape {tuple(t.shape)}); expected 3 (RGB), "
        "4 (RGBA, alpha dropped) or 1 (with grayscale='replicate')"
    )


def _check_spatial(t: torch.Tensor, name: str) -> None:
    if t.shape[0] == 0:
        raise InputError(
            f"{name} is an empty batch (shape {tuple(t.shape)}); pass at least one image"
        )
    if t.shape[-1] == 0 or t.shape[-2] == 0:
        raise InputError(f"{name} has zero height or width (shape {tuple(t.shape)})")


def _numpy_to_nchw(
    x: np.ndarray, data_range: float, grayscale: str, name: str
) -> torch.Tensor:
    if x.dtype == np.bool_:
        raise InputError(
            f"{name} is a boolean numpy array; convert it explicitly, e.g. "
            "mask.astype(np.float32) for values in {0, 1}"
        )
    if x.ndim == 2:
        x = x[:, :, None]
    elif x.ndim == 3:
        if x.shape[2] not in (1, 3, 4):
            hint = ""
            if x.shape[0] in (1, 3, 4):
                hint = "; it looks like CHW: use arr.transpose(1, 2, 0)"
            raise InputError(
                f"{name} is a numpy array of shape {x.shape}; numpy images are read "
                "as HWC (height, width, channels) with 1, 3 or 4 channels, or HW"
                f"{hint}"
            )
    else:
        raise InputError(
            f"{name} is a numpy array of shape {x.shape} ({x.ndim} dims); expected "
            "HWC or HW. For a batch, pass a list of arrays or a torch NCHW tensor"
        )

    # native byte order + contiguous: torch.from_numpy rejects the alternatives
    arr = np.ascontiguousarray(x, dtype=x.dtype.newbyteorder("="))
    if not arr.flags.writeable:
        # e.g. np.asarray(PIL image): torch.from_numpy would warn that the tensor shares read-only memory
        arr = arr.copy()
    if arr.dtype in (np.uint8, np.uint16):
        # Integer data is scaled by its dtype's full range unless the caller
        # gave data_range explicitly (e.g. 4095 for 12-bit data in uint16).
        full = 255.0 if arr.dtype == np.uint8 else 65535.0
        scale = full if data_range == 1.0 else data_range
        t = torch.from_numpy(arr).to(torch.float32).permute(2, 0, 1).unsqueeze(0)
        _check_spatial(t, name)
        t = _fix_channels(t, grayscale, name)
        _check_values(t, scale, name)
        return (t / scale).contiguous()
    if arr.dtype in (np.float16, np.float32, np.float64):
        t = torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0)
        _check_spatial(t, name)
        t = _fix_channels(t, grayscale, name)
        _check_values(t, data_range, name)
        t = t / data_range if data_range != 1.0 else t.clone()
        return t.contiguous()
    raise InputError(
        f"{name} has numpy dtype {arr.dtype}; supported are uint8 (/255), uint16 "
        "(/65535) and float16/32/64 in [0, data_range]. Convert explicitly, e.g. "
        "arr.astype(np.float32) / <your maximum value>"
    )


def _torch_to_nchw(
    x: torch.Tensor, data_range: float, grayscale: str, name: str
) -> torch.Tensor:
    if x.dtype == torch.bool:
        raise InputError(
            f"{name} is a boolean tensor; convert it explicitly, e.g. x.float()"
        )
    if x.is_complex():
        raise InputError(f"{name} is a complex tensor; pass real-valued images")
    if not x.is_floating_point():
        raise InputError(
            f"{name} is an integer tensor (dtype {x.dtype}); convert it to float "
            "and scale it explicitly, e.g. x.float() / 255 for 8-bit data or "
            "x.float() / 65535 for 16-bit data (we never guess the bit depth)"
        )
    if x.ndim == 3:
        if x.shape[0] not in (1, 3, 4) and x.shape[-1] in (1, 3, 4):
            raise InputError(
                f"{name} has shape {tuple(x.shape)}, which looks like HWC; torch "
                "images must be CHW or NCHW: use x.permute(2, 0, 1)"
            )
        x = x.unsqueeze(0)
    elif x.ndim == 4:
        if x.shape[1] not in (1, 3, 4) and x.shape[-1] in (1, 3, 4):
            raise InputError(
                f"{name} has shape {tuple(x.shape)}, which looks like NHWC; torch "
                "images must be NCHW: use x.permute(0, 3, 1, 2)"
            )
    else:
        hint = ""
        if x.ndim == 2:
            hint = "; for a single-channel HxW image use x[None] with grayscale='replicate'"
        raise InputError(
            f"{name} has shape {tuple(x.shape)} ({x.ndim} dims); torch images must "
            f"be CHW or NCHW{hint}"
        )
    _check_spatial(x, name)
    x = _fix_channels(x, grayscale, name)
    _check_values(x, data_range, name)
    # Plain division keeps dtype and autograd graph (no detach, no clamp).
    return x / data_range if data_range != 1.0 else x


def to_tensor(
    x: ImageLike,
    *,
    data_range: float = 1.0,
    grayscale: GrayscaleMode = "error",
    name: str = "img",
) -> torch.Tensor:
    """Convert and validate one image (or one NCHW batch) to float NCHW in ``[0, 1]``.

    Accepted inputs:
        * ``str`` / ``os.PathLike``: read with :func:`load_image`
          (``data_range`` is ignored: files are decoded to ``[0, 1]``).
        * ``PIL.Image.Image``: same mode rules as :func:`load_image`, including
          EXIF orientation (so a file and its opened image give equal results).
        * ``numpy.ndarray`` HWC or HW: ``uint8`` is divided by 255 and ``uint16``
          by 65535 (or by ``data_range`` when it is given explicitly, e.g. 4095
          for 12-bit data); float arrays must lie in ``[0, data_range]``.
          Other integer dtypes and ``bool`` are rejected.
        * ``torch.Tensor`` CHW or NCHW, floating point, values in
          ``[0, data_range]``. Integer tensors are rejected (convert with
          ``x.float() / 255``: we never guess the bit depth).

    Channels: 3 = RGB; 4 = RGBA, the alpha channel is dropped without
    compositing (see :func:`load_image`); 1 = grayscale, an error unless
    ``grayscale="replicate"``.

    Float tensors keep their dtype (float16/bfloat16/float64 are not upcast)
    and device, and the conversion is differentiable: only a division by
    ``data_range`` is applied, never ``detach`` or ``clamp``. When
    ``data_range == 1`` and the input is already NCHW RGB, the input tensor
    itself is returned.

    Args:
        x: the image.
        data_range: the value that means "full white" for float inputs
            (1.0 or 255, say). Must be positive.
        grayscale: ``"error"`` or ``"replicate"`` (see above).
        name: how the input is called in error messages.

    Returns:
        Tensor of shape ``(N, 3, H, W)`` with values in ``[0, 1]``; ``N == 1``
        except for NCHW tensor inputs. Non-tensor inputs give float32 (or the
        numpy float dtype) on the CPU.

    Raises:
        InputError: unsupported type/dtype, wrong rank or channel count,
            NaN/Inf values, values outside ``[0, data_range]`` (tolerance
            ``1e-6 * data_range``), unreadable files.
    """
    data_range = _check_data_range(data_range)
    _check_grayscale_option(grayscale)
    if isinstance(x, (str, bytes, os.PathLike)):
        return load_image(x, grayscale=grayscale).unsqueeze(0)
    if isinstance(x, Image.Image):
        return _pil_to_chw(x, grayscale, name).unsqueeze(0)
    if isinstance(x, np.ndarray):
        return _numpy_to_nchw(x, data_range, grayscale, name)
    if isinstance(x, torch.Tensor):
        return _torch_to_nchw(x, data_range, grayscale, name)
    raise InputError(
        f"{name} has unsupported type {type(x).__module__}.{type(x).__name__}; pass "
        "a file path, a PIL.Image, a numpy HWC/HW array or a torch CHW/NCHW tensor"
    )


def to_batch(
    items: ImageLike | Sequence[ImageLike],
    *,
    data_range: float = 1.0,
    grayscale: GrayscaleMode = "error",
    name: str = "img",
) -> tuple[torch.Tensor | list[torch.Tensor], bool]:
    """Convert one image, one NCHW batch or a list of images for scoring.

    Args:
        items: either a single input accepted by :func:`to_tensor` (including an
            NCHW tensor holding a whole batch), or a ``list``/``tuple`` of
            inputs that are each **one** image.
        data_range, grayscale, name: as for :func:`to_tensor`; list items are
            called ``name[i]`` in error messages.

    Returns:
        ``(batch, is_single)``:

        * ``batch`` is one ``(N, 3, H, W)`` tensor when all images have the same
          size, dtype and device, otherwise a list of ``(1, 3, H_i, W_i)``
          tensors in input order.
        * ``is_single`` is True when ``items`` is *not* a list/tuple and not a
          4-D (NCHW) tensor, i.e. the caller gave one image and expects one
          score back. A list of one image and an NCHW batch with ``N == 1``
          give ``False``: a batch gets a batch of scores back whatever its
          size (the last batch of a DataLoader may hold one image).

    Raises:
        InputError: an empty list, a nested list, a list item that is itself a
            batch of several images, or any :func:`to_tensor` failure.
    """
    if isinstance(items, (list, tuple)):
        if len(items) == 0:
            raise InputError(f"{name} is an empty list; pass at least one image")
        tensors: list[torch.Tensor] = []
        for i, item in enumerate(items):
            item_name = f"{name}[{i}]"
            if isinstance(item, (list, tuple)):
                raise InputError(
                    f"{item_name} is a nested {type(item).__name__}; pass a flat "
                    "list of images"
                )
            t = to_tensor(item, data_range=data_range, grayscale=grayscale, name=item_name)
            if t.shape[0] != 1:
                raise InputError(
                    f"{item_name} is a batch of {t.shape[0]} images (shape "
                    f"{tuple(t.shape)}) inside a list; list items must be single "
                    "images: pass the batch tensor directly, or split it with "
                    "list(x.unbind(0))"
                )
            tensors.append(t)
        first = tensors[0]
        uniform = all(
            t.shape == first.shape and t.dtype == first.dtype and t.device == first.device
            for t in tensors
        )
        if uniform:
            return torch.cat(tensors, dim=0), False
        return tensors, False
    t = to_tensor(items, data_range=data_range, grayscale=grayscale, name=name)
    return t, not (isinstance(items, torch.Tensor) and items.ndim == 4)


def check_pair(
    img: torch.Tensor,
    ref: torch.Tensor,
    *,
    names: tuple[str, str] = ("img", "ref"),
    hint: str | None = None,
) -> None:
    """Check that two NCHW tensors can be compared pixel by pixel.

    Requires the same batch size ``N``, channel count and height/width.

    Args:
        img, ref: tensors of shape ``(N, C, H, W)``.
        names: how the two are called in the error message.
        hint: the sentence telling the user how the pair should be formed;
            defaults to the IACA rule that ``ref`` is the low-light input the
            image was enhanced from.

    Raises:
        InputError: naming both shapes.
    """
    a, b = names
    for t, n in ((img, a), (ref, b)):
        if not isinstance(t, torch.Tensor) or t.ndim != 4:
            shape = tuple(t.shape) if hasattr(t, "shape") else type(t).__name__
            raise InputError(
                f"{n} must be an NCHW tensor here, got {shape}; convert it with "
                "iaca_metric.inputs.to_tensor first"
            )
    if (
        img.shape[0] != ref.shape[0]
        or img.shape[1] != ref.shape[1]
        or img.shape[-2:] != ref.shape[-2:]
    ):
        if hint is None:
            hint = (
                f"{b} must be the low-light input that {a} was enhanced from, at the "
                f"same size: resize the enhanced output back to the input's size "
                "(or crop both identically)"
            )
        raise InputError(
            f"{a} has shape {tuple(img.shape)} but {b} has shape {tuple(ref.shape)}; "
            "they need the same number of images, channels, height and width. "
            f"{hint}"
        )


def check_min_size(
    x: torch.Tensor | Sequence[torch.Tensor],
    min_size: int,
    *,
    name: str = "img",
    purpose: str = "the network",
) -> None:
    """Check that height and width are both at least ``min_size`` pixels.

    Args:
        x: a tensor whose last two dims are ``(H, W)``, or a list of them.
        min_size: the minimum side in pixels (e.g. :data:`MIN_SIDE`).
        name: how the input is called in the error message.
        purpose: what needs the size, for the message.

    Raises:
        InputError: e.g. "img is 20x24 pixels (HxW); the network needs at least
            32x32 pixels; upsample or pad it".
    """
    if isinstance(x, (list, tuple)):
        for i, t in enumerate(x):
            check_min_size(t, min_size, name=f"{name}[{i}]", purpose=purpose)
        return
    h, w = int(x.shape[-2]), int(x.shape[-1])
    if h < min_size or w < min_size:
        raise InputError(
            f"{name} is {h}x{w} pixels (HxW); {purpose} needs at least "
            f"{min_size}x{min_size} pixels; upsample or pad it"
        )

