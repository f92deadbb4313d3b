"""Do the sample's own images, saved as PNG files, get the letters their arrays get?

Saves each image of the notMNIST sample (all of it, then the test split) as a PNG file, 28 x 28 and
enlarged to 112 x 112 (pixels repeated, and Pillow's default bicubic), reads each file back with
``fastmlp.images.read_image`` and its default options, and prints how often the model predicts the
same letter for the file as for the array; a refused file counts as a disagreement. Needs the data
(FASTMLP_DATA, the shipped sample or the cache) and a weights file, e.g. ``make train``'s.

    .venv/bin/python bench/image_agreement.py first-run/model.npz
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

import fastmlp
from fastmlp.errors import InvalidInputError

#: how each image is saved: as it is, or enlarged to 112 x 112
SCALINGS = {
    "28 x 28": lambda image: image,
    "112 x 112, pixels repeated": lambda image: image.resize((112, 112), Image.Resampling.NEAREST),
    "112 x 112, bicubic": lambda image: image.resize((112, 112)),  # Pillow's default
}


def read_back(images, scale, folder):
    """uint8 (n, 28, 28) -> what read_image makes of each saved as a PNG: [(28, 28) uint8, or None if refused]."""
    read = []
    for index, image in enumerate(images):
        path = Path(folder) / f"{index}.png"
        scale(Image.fromarray(image)).save(path)
        try:
            read.append(fastmlp.images.read_image(path))
        except InvalidInputError:
            read.append(None)
    return read


def agreement(model, images):
    """{scaling: (fraction agreeing, number refused)} for uint8 images (n, 28, 28)."""
    direct = model.predict(images.reshape(len(images), -1) / 255)  # (n,)
    figures = {}
    for name, scale in SCALINGS.items():
        with tempfile.TemporaryDirectory() as folder:
            read = read_back(images, scale, folder)
        kept = [i for i, image in enumerate(read) if image is not None]
        from_files = np.full(len(images), -1)
        from_files[kept] = model.predict(np.stack([read[i] for i in kept]).reshape(len(kept), -1) / 255)
        figures[name] = (float(np.mean(from_files == direct)), len(images) - len(kept))
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a weights file (fastmlp train's model.npz)")
    args = parser.parse_args()
    model = fastmlp.MLP.load(args.model)
    data = fastmlp.datasets.load_notmnist(dtype=model.dtype)
    test_images = np.rint(data.test[0] * 255).astype(np.uint8).reshape(-1, 28, 28)
    every_image = np.rint(np.concatenate([data.train[0], data.valid[0], data.test[0]]) * 255).astype(np.uint8)
    for set_name, images in {
        "the whole sample": every_image.reshape(-1, 28, 28),
        "the test split": test_images,
    }.items():
        for name, (agreed, refused) in agreement(model, images).items():
            print(f"{set_name}, {name}: {len(images)} images, {agreed:.2%} agree ({refused} refused)", flush=True)


if __name__ == "__main__":
    main()
