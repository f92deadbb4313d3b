"""Images in, letters out: image files converted the way notMNIST's images were made, and the
model's ranked answers for them.

What the notMNIST sample looks like (measured on its 10,000 images): 28 x 28 grey levels, the
letter **light on a dark background** (background 0, ink up to 255: 98% of the images use the full
range 0-255), and every glyph **stretched to fill the whole frame**: in 96% of the images the
letter's pixels (grey level >= 16) touch all four edges, whatever the letter's own proportions.

So an image file becomes a network input by this rule (:func:`read_image`):

1. Pillow opens it (PNG, JPEG, GIF, BMP, TIFF, WebP, ...; EXIF rotation applied; a transparent
   background is laid over white) and converts it to grey levels (ITU-R 601-2 luma, Pillow's "L";
   16-bit grey is divided by 257).
2. Polarity: the ink must end up light. ``ink="auto"`` reads the background from the image's
   outermost ring of pixels: when at least 90% of it is darker than the middle grey (halfway
   between the darkest and lightest pixel) the letter is light on dark and kept; when at least 90%
   is lighter, the letter is dark on light and the image is inverted; anything in between is
   refused (the letter touches the edges, or the background is uneven): pass ``ink="light"`` or
   ``ink="dark"``.
3. Levels are stretched so that the darkest pixel is 0 and the lightest 255; an image with less
   than 32 grey levels between them is refused as blank.
4. The image is cropped to the letter: the smallest box holding every pixel at least 32 (of 255)
   above the background. A box more than twice as wide as tall (more than one letter?) or under
   8 pixels on its longer side (too small to read) is refused.
5. The box is resized to 28 x 28 (Lanczos), stretched like the data's glyphs, and scaled to
   [0, 1] as the data are (grey level / 255).

An image that already is a notMNIST image (28 x 28, light letter filling the frame) comes through
unchanged. idx files and ``.npz`` files hold images already in the data's format: they are only
scaled.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from .datasets import read_idx, read_npz, to_features
from .errors import InvalidInputError
from .files import PathArg, require_file

if TYPE_CHECKING:
    from .mlp import MLP

__all__ = ["read_image", "read_inputs", "predict_files", "rank_images", "Prediction", "INK_CHOICES", "SIDE"]

#: how ``read_image`` decides which of ink and background is which
INK_CHOICES = ("auto", "light", "dark")
SIDE = 28  # the data's images are SIDE x SIDE
BORDER_AGREEMENT = 0.9  # auto polarity: this fraction of the border on one side of the middle grey
MIN_CONTRAST = 32  # grey levels between the darkest and lightest pixel, at least
INK_LEVEL = 32  # a pixel this far above the background (of 255) is part of the letter
MAX_WIDTH_PER_HEIGHT = 2.0
MIN_LETTER_PIXELS = 8  # the letter's box, longer side


def _open_grey(path, name):
    """The image at ``path`` (or in a binary file object) as a 2-D uint8 array of grey levels
    (transparency laid over white); ``name`` names it in messages."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not hasattr(path, "read"):
        path = require_file(path, "image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return _grey_levels(ImageOps.exif_transpose(image))
    except UnidentifiedImageError:
        raise InvalidInputError(
            f"{name} is not an image Pillow can read (PNG, JPEG, GIF, BMP, TIFF, WebP, ...)"
        ) from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise InvalidInputError(f"{name} is too large to be a letter ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:  # truncated or corrupt data
        raise InvalidInputError(f"{name} is not a readable image: {exc}") from None


def _grey_levels(image):
    """A Pillow image -> 2-D uint8 grey levels: transparency laid over white, 16-bit grey scaled."""
    from PIL import Image

    if image.mode.startswith("I"):  # 16-bit grey (PNG, TIFF): 0-65535 -> 0-255; convert("L") would clip
        return np.clip(np.rint(np.asarray(image, dtype=np.float64) / 257), 0, 255).astype(np.uint8)
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    return np.asarray(image.convert("L"))


def _ink_is_light(grey, ink, path):
    """True when the letter is lighter than its background (see the module's rule, step 2)."""
    if ink != "auto":
        return ink == "light"
    middle = (int(grey.min()) + int(grey.max())) / 2
    ring = np.concatenate([grey[0], grey[-1], grey[1:-1, 0], grey[1:-1, -1]])
    light = float(np.mean(ring > middle))
    if light <= 1 - BORDER_AGREEMENT:
        return True
    if light >= BORDER_AGREEMENT:
        return False
    raise InvalidInputError(
        f"{path}: cannot tell the letter from the background: {light:.0%} of the image's border is light "
        f"and {1 - light:.0%} dark (the letter may touch the edges); say which the ink is with "
        "--ink light or --ink dark (ink='light' / 'dark')"
    )


def _letter_box(levels, path):
    """levels (light ink on 0) -> the crop (rows, columns) slices holding the letter."""
    rows = np.flatnonzero((levels >= INK_LEVEL).any(axis=1))
    columns = np.flatnonzero((levels >= INK_LEVEL).any(axis=0))
    height, width = rows[-1] - rows[0] + 1, columns[-1] - columns[0] + 1
    if max(height, width) < MIN_LETTER_PIXELS:
        raise InvalidInputError(
            f"{path}: the letter is only {width} x {height} pixels; draw it at least {MIN_LETTER_PIXELS} pixels tall"
        )
    if width > MAX_WIDTH_PER_HEIGHT * height:
        raise InvalidInputError(
            f"{path}: the ink is {width} pixels wide and {height} tall; one letter A-J is "
            f"at most {MAX_WIDTH_PER_HEIGHT:g} times as wide as tall (is it a word?)"
        )
    return slice(rows[0], rows[-1] + 1), slice(columns[0], columns[-1] + 1)


def read_image(path: PathArg | BinaryIO, *, ink: str = "auto") -> np.ndarray:
    """An image file -> (28, 28) uint8, light letter on 0, converted by the module's rule.

    ``path`` may also be a binary file object (e.g. ``io.BytesIO`` of an upload); messages name it
    by its ``name`` attribute, else "the file"."""
    from PIL import Image

    if ink not in INK_CHOICES:
        raise InvalidInputError(f"ink must be one of {', '.join(INK_CHOICES)}, got {ink!r}")
    name = getattr(path, "name", "the file") if hasattr(path, "read") else path  # as messages call it
    grey = _open_grey(path, name)
    low, high = int(grey.min()), int(grey.max())
    if high - low < MIN_CONTRAST:
        raise InvalidInputError(
            f"{name}: the image is blank (grey levels {low}-{high} only; "
            f"a letter needs {MIN_CONTRAST} or more levels of contrast)"
        )
    if not _ink_is_light(grey, ink, name):
        grey, low, high = 255 - grey, 255 - high, 255 - low
    levels = np.rint((grey.astype(np.float64) - low) * (255 / (high - low))).astype(np.uint8)
    rows, columns = _letter_box(levels, name)
    letter = Image.fromarray(np.ascontiguousarray(levels[rows, columns]))
    return np.asarray(letter.resize((SIDE, SIDE), Image.Resampling.LANCZOS))


def _read_image_set(path, kind):
    """An idx images file or an .npz with 'images' -> uint8 (n, 28, 28), checked for the size."""
    images = read_npz(path)[0] if kind == "npz" else read_idx(path, expected_ndim=3)
    if images.ndim == 2:  # (n, 784) rows, as read_npz allows
        images = images.reshape(len(images), SIDE, SIDE) if images.shape[1] == SIDE * SIDE else images
    if images.shape[1:] != (SIDE, SIDE) or images.dtype != np.uint8:
        raise InvalidInputError(
            f"{path}: images have shape {images.shape} and dtype {images.dtype}; "
            f"expected (n, {SIDE}, {SIDE}) uint8 like notMNIST"
        )
    return images


def _kind(path):
    name = Path(path).name
    if name.endswith(".npz"):
        return "npz"
    if "idx3-ubyte" in name:
        return "idx"
    return "image"


def read_inputs(paths: Iterable[PathArg], *, ink: str = "auto") -> tuple[list[str], np.ndarray]:
    """Image files, idx images files and .npz files -> (names, uint8 images (n, 28, 28)).

    Every input is read and checked before anything is returned; an image set contributes one
    name per image, ``path[index]``.
    """
    names, images = [], []
    for path in paths:
        kind = _kind(path)
        if kind == "image":
            names.append(str(path))
            images.append(read_image(path, ink=ink)[None])
        else:
            batch = _read_image_set(path, kind)
            names += [f"{path}[{index}]" for index in range(len(batch))]
            images.append(batch)
    if not names:
        raise InvalidInputError("no images given")
    return names, np.concatenate(images)


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


def predict_files(model: MLP, paths: Iterable[PathArg], *, ink: str = "auto", top: int = 3) -> list[Prediction]:
    """Read ``paths`` (see :func:`read_inputs`) and rank ``top`` classes for each -> [Prediction]."""
    names, images = read_inputs(paths, ink=ink)
    return rank_images(model, names, images, top=top)


def rank_images(model: MLP, names: list[str], images: np.ndarray, *, top: int = 3) -> list[Prediction]:
    """The ``top`` classes of each uint8 image (n, 28, 28), most likely first -> [Prediction] named ``names``."""
    probabilities = model.predict_proba(to_features(images, model.dtype))  # (n, K)
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :top]
    return [
        Prediction(name, [(model.classes[k], float(row[k])) for k in ranks])
        for name, row, ranks in zip(names, probabilities, order, strict=True)
    ]
