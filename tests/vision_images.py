"""A fixed, generated image set for the vision tests (nothing downloaded): gradients, shapes and noise in
JPEG and PNG, of several sizes and colour modes, the same bytes on every run."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw


def _encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def fixed_images() -> dict[str, bytes]:
    rng = np.random.default_rng(7)
    images: dict[str, bytes] = {}
    for i, (width, height) in enumerate([(320, 240), (240, 320), (224, 224), (500, 375), (64, 48), (1024, 768)]):
        y, x = np.mgrid[0:height, 0:width]
        pixels = np.stack([(x * (i + 1)) % 256, (y * (2 * i + 1)) % 256, ((x + y) * 3) % 256], -1).astype(np.uint8)
        image = Image.fromarray(pixels, "RGB")
        draw = ImageDraw.Draw(image)
        draw.ellipse((width // 4, height // 4, width // 2, height // 2), fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
        images[f"pattern{i}.{'jpg' if i % 2 else 'png'}"] = _encode(image, "JPEG" if i % 2 else "PNG")
    noise = rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)
    images["noise.png"] = _encode(Image.fromarray(noise, "RGB"), "PNG")
    images["gray.jpg"] = _encode(Image.fromarray(noise[:, :, 0], "L"), "JPEG")
    rgba = Image.fromarray(np.dstack([noise, np.full((300, 300), 128, np.uint8)]), "RGBA")
    images["rgba.png"] = _encode(rgba, "PNG")
    images["palette.png"] = _encode(Image.fromarray(noise, "RGB").convert("P"), "PNG")
    return images


def solid_png(rgb: tuple[int, int, int], size: tuple[int, int] = (300, 260)) -> bytes:
    return _encode(Image.new("RGB", size, rgb), "PNG")
