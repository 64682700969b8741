"""The image model's input, shared by every pack: a checked call into the torch-free crop.

Example
-------
>>> pixels = preprocess_image(img, 256)                            # doctest: +SKIP
>>> pixels.shape, pixels.dtype                                     # doctest: +SKIP
((256, 256, 3), dtype('uint8'))
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from tastegraph.errors import InvalidInput
from tastegraph.imaging.geometry import model_input
from tastegraph.models.lite_files import IMAGE_SIZE

__all__ = ["CROP_FRACTION", "preprocess_image"]

# The whole shorter side (a square crop, no margin dropped). Lite0 was evaluated on an 87.5% crop,
# but one forward pass feeds both image retrieval and the caption bridge, and the full square is
# better for both on each half of the data (bench/eval_quality_push.py): clothing mAP@10 0.549 ->
# 0.556 (PCA) and Flickr caption R@10 0.283 -> 0.291. Squashing the whole frame to 224x224 helps
# captions more (0.301) but distorts portrait product photos (clothing mAP@10 0.508), so no.
CROP_FRACTION = 1.0


def preprocess_image(
    image: object,
    size: int = IMAGE_SIZE,
    crop_fraction: float = CROP_FRACTION,
    max_aspect: float = 1.0,
) -> NDArray[np.uint8]:
    """Central crop resized to the model input with bicubic filtering, as uint8 (rows, cols, 3).

    A ``size`` square by default; ``max_aspect`` > 1 lets landscape and portrait photos keep more
    of their frame (see :func:`tastegraph.imaging.geometry.model_input_shape`).

    Equivalent to "resize the shorter side to ``size / crop_fraction``, then centre-crop ``size``"
    but done as one resampling of the crop box, so large photos are never resized whole.
    """
    if not isinstance(image, Image.Image):
        raise InvalidInput(f"expected a PIL image, got {type(image).__name__}")
    # The conversion to RGB and the crop-and-resize live with the other torch-free image
    # operations (``App.preprocess`` hands them to ingest's decode workers).
    return model_input(image, size, crop_fraction, max_aspect)
