"""Images in, letters out: image files converted the way notMNIST's images were made, and the
model's ranked answers for them.

What the notMNIST sample looks like (measured on its 10,000 images): 28 x 28 grey levels, the
letter **light on a dark background** (background 0, ink up to 255: 98% of the images use the full
range 0-255), and every glyph **stretched to fill the whole frame**: in 96% of the images the
letter's pixels (grey level >= 16) touch all four edges, whatever the letter's own proportions.

So an image file becomes a network input by this rule (:func:`read_image`):

1. Pillow opens it (PNG, JPEG, GIF, BMP, TIFF, WebP, ...): at most MAX_PIXELS (50 megapixels,
   refused beyond before decoding, and counted in the memory budget); a frame with a side over
   WORKING_SIDE (1024) is first reduced by a whole factor (a JPEG is decoded at 1/2 to 1/8 of its
   size); EXIF rotation is applied; an animation gives its first frame that is not blank. It
   becomes grey levels (ITU-R 601-2 luma, Pillow's "L"): a transparent background is laid over
   black under a light drawing and over white under a dark one; 16-bit values are divided by 257,
   float values in 0-1 multiplied by 255 (values already within 0-255 are taken as they are).
2. Polarity: the ink must end up light. ``ink="auto"``: when at least 95% of the image's border (its
   outermost ring of pixels) is lighter than the middle grey (halfway between the darkest and
   lightest pixel), the border is paper under a dark letter and the image is inverted; any other
   border, and any image with less than 32 grey levels between its darkest and lightest pixel (it
   has no letter edge to tell paper by), is read in the data's own style, a light letter on a dark
   background or filling the frame. ``ink="light"`` or ``ink="dark"`` says which it is instead.
3. Without contrast: an image with less than 32 grey levels of contrast is, once its ink is light,
   either ink filling the whole frame (every pixel at least 224: the sample has 154 such I's, 141 of
   them a uniform white square) and is kept as it is, resized only; or blank, and refused.
4. Levels are stretched so that the darkest pixel is 0 and the lightest 255.
5. Framing: a letter with margins (at most 10% of its border lighter than the middle grey) is
   cropped to the smallest box holding every pixel at least 32 (of 255) above the background; a
   box more than twice as wide as tall (more than one letter?) or under 8 pixels on its longer
   side (too small to read) is refused. A letter filling the frame is kept whole, as the data's are.
6. The result is resized to 28 x 28: shrunk by its largest whole factor by averaging blocks of pixels
   (so an image enlarged by repeating pixels comes back exactly), then resampled with Lanczos; and
   scaled to [0, 1] as the data are (grey level / 255).

An image that already is a notMNIST image (28 x 28, light letter filling the frame) comes through
unchanged. idx files and ``.npz`` files hold images already in the data's format: they are only
scaled, a batch at a time.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple

import numpy as np

from .datasets import read_idx, read_npz_images, to_features
from .errors import FastMLPError, InvalidInputError
from .files import PathArg, require_file
from .memory import ensure_fits

if TYPE_CHECKING:
    from .mlp import MLP

__all__ = [
    "read_image",
    "read_inputs",
    "predict_files",
    "rank_images",
    "Prediction",
    "INK_CHOICES",
    "SIDE",
    "MAX_PIXELS",
]

#: how ``read_image`` decides which of ink and background is which
INK_CHOICES = ("auto", "light", "dark")
SIDE = 28  # the data's images are SIDE x SIDE
#: auto polarity: a border this light (this fraction of its pixels above the middle grey) is paper
#: under a dark letter; any other border is read as the data's, under a light letter
PAPER_BORDER = 0.95
#: a border with more than this fraction of ink: the letter fills the frame, as the data's do (no crop)
FILLED_BORDER = 0.1
MIN_CONTRAST = 32  # grey levels between the darkest and lightest pixel, at least
#: an image with less contrast is ink filling the frame when its every pixel is this light (ink light)
FULL_INK = 255 - MIN_CONTRAST + 1
INK_LEVEL = 32  # a pixel this far above the background (of 255) is part of the letter
MAX_WIDTH_PER_HEIGHT = 2.0
MIN_LETTER_PIXELS = 8  # the letter's box, longer side
#: the largest image read, in pixels (Pillow's own limit is 89.5 million)
MAX_PIXELS = 50_000_000
#: a larger frame is reduced (by a whole factor, averaging) to at most this many pixels a side first
WORKING_SIDE = 1024
#: memory a pixel of the decoded frame takes at most: Pillow's 4 bytes (RGB is stored as RGBX), and a
#: 16-bit or palette frame's conversion before it can be reduced
_BYTES_PER_PIXEL = 6
#: modes Image.reduce does not take, and what they are converted to first
_BEFORE_REDUCING = {"1": "L", "P": "RGBA", "PA": "RGBA", "I;16": "I", "I;16B": "I", "I;16L": "I", "I;16N": "I"}
#: the EXIF tag of the orientation (1-8: how the picture must be turned to stand upright)
_ORIENTATION_TAG = 0x0112


class _Frame(NamedTuple):
    """What ``_open_grey`` read: the grey levels of the first frame with a letter (2-D uint8), how many
    frames it looked at, and how many of the file's pixels make one of ``grey`` (a side's ratio)."""

    grey: np.ndarray
    frames: int
    scale: float


def _open_grey(source, path):
    """The image at ``source`` (a path, or a binary file object such as an upload) -> :class:`_Frame`;
    ``path`` names it in messages."""
    from PIL import Image, UnidentifiedImageError

    if not hasattr(source, "read"):
        source = require_file(source, "image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as image:
                _check_size(image, path)
                return _first_drawn_frame(image, path)
    except FastMLPError:  # our own refusals (an InvalidInputError is also a ValueError)
        raise
    except UnidentifiedImageError:
        raise InvalidInputError(
            f"{path} is not an image Pillow can read (PNG, JPEG, GIF, BMP, TIFF, WebP, ...)"
        ) from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise InvalidInputError(f"{path} is too large to be a letter ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:  # truncated or corrupt data
        raise InvalidInputError(f"{path} is not a readable image: {exc}") from None


def _check_size(image, path):
    """Refuse, before decoding, a frame over MAX_PIXELS or beyond the memory available."""
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise InvalidInputError(
            f"{path} is {width} x {height} pixels ({width * height / 1e6:.1f} megapixels); a letter's image "
            f"may have at most {MAX_PIXELS / 1e6:g} megapixels: scale it down"
        )
    ensure_fits(
        width * height * _BYTES_PER_PIXEL,
        f"reading {path} ({width} x {height} pixels)",
        hint="free memory, or scale the image down",
    )


def _first_drawn_frame(image, path):
    """The first frame, or in an animation the first frame that is not blank (looking at frames until
    MAX_PIXELS pixels have been decoded) -> :class:`_Frame`."""
    frames, size = getattr(image, "n_frames", 1), image.size
    looked = 0
    while True:
        image.seek(looked)
        grey = _grey_levels(_working_frame(image), path)
        looked += 1
        if _contrast(grey) >= MIN_CONTRAST or looked == frames or looked * math.prod(size) >= MAX_PIXELS:
            return _Frame(grey, looked, max(size) / max(grey.shape))


def _working_frame(image):
    """The current frame reduced early and upright: a JPEG decoded at 1/2 to 1/8 scale, any frame with
    a side over WORKING_SIDE reduced by a whole factor (averaging), EXIF rotation applied."""
    from PIL import Image

    orientation = image.getexif().get(_ORIENTATION_TAG, 1)
    if image.format == "JPEG" and max(image.size) > WORKING_SIDE:
        factor = max(image.size) / WORKING_SIDE
        image.draft(None, (int(image.width / factor), int(image.height / factor)))
    factor = math.ceil(max(image.size) / WORKING_SIDE)
    if factor > 1:
        image = image.convert(_BEFORE_REDUCING[image.mode]) if image.mode in _BEFORE_REDUCING else image
        image = image.reduce(factor)
    transpose = {  # orientation -> the transposition that makes it upright, as PIL.ImageOps.exif_transpose
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }.get(orientation)
    return image.transpose(transpose) if transpose is not None else image


def _grey_levels(frame, path):
    """A Pillow frame -> 2-D uint8 grey levels (ITU-R 601-2 luma): transparency laid over a background
    that contrasts with what is drawn; 16-bit and float values scaled by the range they use."""
    if frame.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in frame.info:
        return _over_contrasting_background(frame.convert("RGBA"))
    if frame.mode.startswith(("I", "F")):
        return _scaled_levels(np.asarray(frame), path)
    return np.asarray(frame.convert("L"))


def _over_contrasting_background(rgba):
    """An RGBA frame -> grey levels, laid over black when what is drawn (its opaque part) is light,
    over white when it is dark: a white letter on a transparent background stays readable."""
    luma = np.asarray(rgba.convert("L"), dtype=np.float32)
    alpha = np.asarray(rgba.getchannel("A"), dtype=np.float32) / 255
    drawn = float(alpha.sum())
    light = drawn > 0 and float((luma * alpha).sum()) / drawn > 127.5
    background = 0.0 if light else 255.0
    return np.rint(luma * alpha + background * (1 - alpha)).astype(np.uint8)


def _scaled_levels(values, path):
    """16- or 32-bit integer, or float, pixel values -> 0-255: integers within 0-255 as they are, within
    0-65535 divided by 257; floats within 0-1 times 255, within 0-255 as they are."""
    low, high = values.min(), values.max()
    floats = np.issubdtype(values.dtype, np.floating)
    ranges = ((1.0, 255.0), (255.0, 1.0)) if floats else ((255, 1.0), (65535, 255 / 65535))
    if np.isfinite(low) and np.isfinite(high) and low >= 0:
        for top, scale in ranges:
            if high <= top:
                return np.rint(values.astype(np.float32) * np.float32(scale)).astype(np.uint8)
    allowed = "0-1 or 0-255 (floats)" if floats else "0-255 or 0-65535 (integers)"
    raise InvalidInputError(
        f"{path}: pixel values run from {low} to {high}; an image's values must be within {allowed}"
    )


def _contrast(grey):
    return int(grey.max()) - int(grey.min())


def _border(grey):
    """The outermost ring of pixels, (2 (H + W) - 4,)."""
    return np.concatenate([grey[0], grey[-1], grey[1:-1, 0], grey[1:-1, -1]])


def _light_border(grey):
    """The fraction of the border lighter than the middle grey (halfway between darkest and lightest)."""
    middle = (int(grey.min()) + int(grey.max())) / 2
    return float(np.mean(_border(grey) > middle))


def _ink_is_light(grey, ink):
    """True when the letter is lighter than its background (the module's rule, step 2): given by
    ``ink``, or for "auto" dark only on a border that is (nearly) all light paper, in an image with a
    letter's contrast."""
    if ink != "auto":
        return ink == "light"
    return _contrast(grey) < MIN_CONTRAST or _light_border(grey) < PAPER_BORDER


def _letter_box(levels, path, scale):
    """levels (light ink on 0) -> the crop (rows, columns) slices holding the letter; ``scale``: the
    file's pixels per pixel of ``levels`` (for the message)."""
    rows = np.flatnonzero((levels >= INK_LEVEL).any(axis=1))
    columns = np.flatnonzero((levels >= INK_LEVEL).any(axis=0))
    height, width = rows[-1] - rows[0] + 1, columns[-1] - columns[0] + 1
    if max(height, width) * scale < MIN_LETTER_PIXELS:
        raise InvalidInputError(
            f"{path}: the letter is only {round(width * scale)} x {round(height * scale)} pixels; "
            f"draw it at least {MIN_LETTER_PIXELS} pixels tall"
        )
    if width > MAX_WIDTH_PER_HEIGHT * height:
        raise InvalidInputError(
            f"{path}: the ink is {round(width * scale)} pixels wide and {round(height * scale)} tall; one letter "
            f"A-J is at most {MAX_WIDTH_PER_HEIGHT:g} times as wide as tall (is it a word?)"
        )
    return slice(rows[0], rows[-1] + 1), slice(columns[0], columns[-1] + 1)


def _blank(path, grey, frames):
    animation = f"; all {frames} frames looked at are blank" if frames > 1 else ""
    return InvalidInputError(
        f"{path}: the image is blank (grey levels {grey.min()}-{grey.max()} only; "
        f"a letter needs {MIN_CONTRAST} or more levels of contrast{animation})"
    )


def read_image(source: PathArg | BinaryIO, *, ink: str = "auto") -> np.ndarray:
    """An image file -> (28, 28) uint8, light letter on 0, converted by the module's rule.

    ``source`` may also be a binary file object (e.g. ``io.BytesIO`` of an upload); messages name it
    by its ``name`` attribute, else "the file"."""
    if ink not in INK_CHOICES:
        raise InvalidInputError(f"ink must be one of {', '.join(INK_CHOICES)}, got {ink!r}")
    path = getattr(source, "name", "the file") if hasattr(source, "read") else source  # as messages call it
    frame = _open_grey(source, path)
    grey = frame.grey if _ink_is_light(frame.grey, ink) else 255 - frame.grey
    if _contrast(grey) < MIN_CONTRAST:  # step 3: ink filling the frame, or blank
        if grey.min() < FULL_INK:
            raise _blank(path, frame.grey, frame.frames)
        return _resized(grey)
    low, high = int(grey.min()), int(grey.max())
    levels = np.rint((grey - np.float32(low)) * np.float32(255 / (high - low))).astype(np.uint8)
    if _light_border(levels) <= FILLED_BORDER:  # the letter has margins: crop to it
        rows, columns = _letter_box(levels, path, frame.scale)
        levels = np.ascontiguousarray(levels[rows, columns])
    return _resized(levels)


def _resized(levels):
    """2-D uint8 levels -> (28, 28) uint8 (the module's rule, step 6; 28 x 28 levels come through unchanged)."""
    from PIL import Image

    image = Image.fromarray(levels).resize((SIDE, SIDE), Image.Resampling.LANCZOS, reducing_gap=1.0)
    return np.asarray(image)


def _read_image_set(path, kind):
    """An idx images file or an .npz with 'images' -> uint8 (n, 28, 28), checked for the size."""
    images = read_npz_images(path) if kind == "npz" else read_idx(path, expected_ndim=3)
    if images.ndim == 2 and images.shape[1] == SIDE * SIDE:  # (n, 784) rows
        images = images.reshape(len(images), SIDE, SIDE)
    if images.ndim != 3 or images.shape[1:] != (SIDE, SIDE) or images.dtype != np.uint8:
        raise InvalidInputError(
            f"{path}: images have shape {images.shape} and dtype {images.dtype}; "
            f"expected (n, {SIDE}, {SIDE}) uint8 like notMNIST"
        )
    if len(images) == 0:
        raise InvalidInputError(f"{path} holds no images (its shape is {images.shape})")
    return images


def _kind(path):
    name = Path(path).name.lower()
    if name.endswith(".npz"):
        return "npz"
    if "idx3-ubyte" in name:
        return "idx"
    return "image"


def _read_all(paths, ink):
    """[(names, uint8 images (n, 28, 28))], one entry per image set and one per run of image files,
    every input read and checked."""
    sets, files, file_names = [], [], []
    for path in paths:
        kind = _kind(path)
        if kind == "image":
            file_names.append(str(path))
            files.append(read_image(path, ink=ink))
            continue
        if files:
            sets.append((file_names, np.stack(files)))
            files, file_names = [], []
        batch = _read_image_set(path, kind)
        sets.append(([f"{path}[{index}]" for index in range(len(batch))], batch))
    if files:
        sets.append((file_names, np.stack(files)))
    if not sets:
        raise InvalidInputError("no images given")
    return sets


def read_inputs(paths: Iterable[PathArg], *, ink: str = "auto") -> tuple[list[str], np.ndarray]:
    """Image files, idx images files and .npz files -> (names, uint8 images (n, 28, 28)).

    Every input is read and checked before anything is returned; an image set contributes one
    name per image, ``path[index]``; an .npz needs only its ``images`` (its labels are not read).
    """
    sets = _read_all(paths, ink)
    return [name for names, _ in sets for name in names], np.concatenate([images for _, images in sets])


@dataclass
class Prediction:
    """The model's answer for one image: its classes ranked by probability, most likely first."""

    source: str
    ranked: list[tuple[str, float]]  # [(class name, probability)], most likely first

    @property
    def letter(self) -> str:
        return self.ranked[0][0]

    @property
    def probability(self) -> float:
        return self.ranked[0][1]

    def line(self) -> str:
        """``source: C 0.973  (next: G 0.015, E 0.004)``"""
        rest = ", ".join(f"{name} {p:.3f}" for name, p in self.ranked[1:])
        return f"{self.source}: {self.letter} {self.probability:.3f}" + (f"  (next: {rest})" if rest else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.source,
            "letter": self.letter,
            "probability": self.probability,
            "next": [{"letter": name, "probability": p} for name, p in self.ranked[1:]],
        }


def _check_model_reads_letters(model):
    if model.n_in != SIDE * SIDE:
        side = math.isqrt(model.n_in)
        reads = f"{side} x {side} images" if side * side == model.n_in else f"rows of {model.n_in} features"
        raise InvalidInputError(
            f"the model reads {reads}; image files become {SIDE} x {SIDE} images like notMNIST's, "
            f"so predicting letters needs a model of {SIDE * SIDE} inputs"
        )


#: images converted to features and run through the model at a time
_BATCH = 4096


def predict_files(model: MLP, paths: Iterable[PathArg], *, ink: str = "auto", top: int = 3) -> list[Prediction]:
    """Read ``paths`` (see :func:`read_inputs`) and rank ``top`` classes for each -> [Prediction].

    Every input is read first; the images then go through the model a batch at a time."""
    _check_model_reads_letters(model)
    predictions = []
    for names, images in _read_all(paths, ink):
        for start in range(0, len(images), _BATCH):
            predictions += rank_images(model, names[start : start + _BATCH], images[start : start + _BATCH], top=top)
    return predictions


def rank_images(model: MLP, names: list[str], images: np.ndarray, *, top: int = 3) -> list[Prediction]:
    """The ``top`` classes of each uint8 image (n, 28, 28), most likely first -> [Prediction] named ``names``."""
    probabilities = model.predict_proba(to_features(images, model.dtype))  # (n, K)
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :top]  # (n, top)
    ranked = np.take_along_axis(probabilities, order, axis=1)
    return [
        Prediction(name, [(model.classes[k], p) for k, p in zip(ranks, row, strict=True)])
        for name, ranks, row in zip(names, order.tolist(), ranked.tolist(), strict=True)
    ]
