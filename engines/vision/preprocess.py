"""Image bytes -> the network's input: decode (JPEG, PNG, anything Pillow reads), RGB, resize the shorter
side, center crop, scale to [0, 1] and normalise with ImageNet's mean and std (what torchvision's ResNets
were trained with). Bad input raises `ImageInputError` with a message fit for a 400."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Decompression bombs: a tiny PNG can claim gigapixels. 64 MP covers any real photo.
DEFAULT_MAX_IMAGE_PIXELS = 64_000_000


class ImageInputError(ValueError):
    """The bytes are not an image the service can classify; the message names why."""


@dataclass(slots=True, frozen=True)
class PreprocessSpec:
    image_size: int = 224
    resize_size: int = 256
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    # Largest width x height decoded; checked from the header, before any pixel is decompressed.
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS


def decode_image(data: bytes, max_bytes: int, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> Image.Image:
    """An RGB image from encoded bytes, fully decoded (a truncated file fails here, not later)."""
    if not data:
        raise ImageInputError("the image is empty (0 bytes)")
    if len(data) > max_bytes:
        raise ImageInputError(f"the image is {len(data)} bytes; the limit is {max_bytes}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageInputError(f"the image is {width}x{height} pixels; the limit is {max_pixels}")
            image.load()
    except ImageInputError:
        raise
    except UnidentifiedImageError:
        raise ImageInputError("the bytes are not an image in a supported format (JPEG, PNG, ...)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageInputError(f"the image could not be decoded: {error}") from None
    # Palette, grayscale, alpha, CMYK, 16-bit: the network wants 3 channels of 8 bits. Alpha is dropped.
    return image.convert("RGB")


def to_tensor(image: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """float32 [3, image_size, image_size], normalised. Bilinear resize with antialiasing, as torchvision's
    `Resize` does on PIL images, then a center crop."""
    width, height = image.size
    scale = spec.resize_size / min(width, height)
    new_w, new_h = max(spec.image_size, round(width * scale)), max(spec.image_size, round(height * scale))
    resized = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
    left, top = (new_w - spec.image_size) // 2, (new_h - spec.image_size) // 2
    cropped = resized.crop((left, top, left + spec.image_size, top + spec.image_size))
    pixels = np.asarray(cropped, dtype=np.float32) / 255.0
    normalised = (pixels - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    return np.ascontiguousarray(normalised.transpose(2, 0, 1))


def preprocess(data: bytes, spec: PreprocessSpec, max_bytes: int) -> np.ndarray:
    """Called by the vision replica (in a worker thread: decoding is CPU work) for each image."""
    return to_tensor(decode_image(data, max_bytes, spec.max_pixels), spec)
