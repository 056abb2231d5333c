"""Pre-processing (decode, RGB, resize, center crop, normalise) and top-k post-processing."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from engines.vision.labels import generated_labels, read_labels
from engines.vision.postprocess import softmax, top_k
from engines.vision.preprocess import IMAGENET_MEAN, IMAGENET_STD, ImageInputError, PreprocessSpec, preprocess
from tests.vision_images import fixed_images, solid_png

SPEC = PreprocessSpec()
LIMIT = 10 * 1024 * 1024


def test_every_fixed_image_becomes_a_normalised_224_tensor() -> None:
    for name, data in fixed_images().items():
        tensor = preprocess(data, SPEC, LIMIT)
        assert tensor.shape == (3, 224, 224) and tensor.dtype == np.float32, name
        assert tensor.flags.c_contiguous
        assert -2.2 < tensor.min() and tensor.max() < 2.7, name  # (0 - mean)/std .. (1 - mean)/std


def test_solid_colour_normalises_to_imagenet_statistics() -> None:
    tensor = preprocess(solid_png((255, 0, 128)), SPEC, LIMIT)
    expected = (np.array([255, 0, 128]) / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(tensor.reshape(3, -1).mean(axis=1), expected, atol=1e-5)
    np.testing.assert_allclose(tensor.reshape(3, -1).std(axis=1), 0, atol=1e-5)


def test_center_crop_keeps_the_middle_of_a_wide_image() -> None:
    # Left third red, middle third green, right third blue: after resize (short side 256) and a centred
    # 224 crop of the 768-wide image only green remains.
    pixels = np.zeros((256, 768, 3), np.uint8)
    pixels[:, :256, 0] = pixels[:, 256:512, 1] = pixels[:, 512:, 2] = 255
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    tensor = preprocess(buffer.getvalue(), SPEC, LIMIT)
    denormalised = tensor * np.array(IMAGENET_STD)[:, None, None] + np.array(IMAGENET_MEAN)[:, None, None]
    np.testing.assert_allclose(denormalised.reshape(3, -1).mean(axis=1), [0, 1, 0], atol=1e-3)


def test_small_image_is_upscaled_to_the_crop() -> None:
    assert preprocess(solid_png((1, 2, 3), size=(20, 10)), SPEC, LIMIT).shape == (3, 224, 224)


@pytest.mark.parametrize(("data", "needle"), [
    (b"", "empty"),
    (b"hello, not an image at all", "not an image"),
    (solid_png((9, 9, 9))[:80], "could not be decoded"),
])
def test_bad_bytes_raise_image_input_error(data: bytes, needle: str) -> None:
    with pytest.raises(ImageInputError, match=needle):
        preprocess(data, SPEC, LIMIT)


def test_oversized_input_is_rejected_before_decoding() -> None:
    with pytest.raises(ImageInputError, match="limit is 1024"):
        preprocess(b"x" * 2048, SPEC, 1024)


def test_pixel_bomb_is_rejected() -> None:
    buffer = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(buffer, format="PNG")  # ~12 KB, 100 MP
    with pytest.raises(ImageInputError, match="pixels"):
        preprocess(buffer.getvalue(), SPEC, LIMIT)
    # The bound is the config's (vision max_image_pixels): a 1 MP limit refuses a 2 MP image.
    small = io.BytesIO()
    Image.new("RGB", (2000, 1000)).save(small, format="PNG")
    with pytest.raises(ImageInputError, match="2000x1000 pixels; the limit is 1000000"):
        preprocess(small.getvalue(), PreprocessSpec(max_pixels=1_000_000), LIMIT)
    assert preprocess(small.getvalue(), SPEC, LIMIT).shape == (3, 224, 224)


def test_top_k_orders_scores_and_breaks_ties_by_index() -> None:
    logits = np.array([[0.0, 3.0, 3.0, -1.0], [5.0, 0.0, 0.0, 0.0]], np.float32)
    rows = top_k(logits, generated_labels(4), 3)
    assert [c.index for c in rows[0]] == [1, 2, 0] and rows[0][0].label == "class_1"
    assert rows[1][0].index == 0 and rows[1][0].score == pytest.approx(float(softmax(logits[1:])[0, 0]))
    assert len(top_k(logits, generated_labels(4), 99)[0]) == 4


def test_softmax_is_stable_for_huge_logits() -> None:
    probabilities = softmax(np.array([[1e4, 0.0]], np.float64))
    assert np.isfinite(probabilities).all() and probabilities[0, 0] == pytest.approx(1.0)


def test_labels_file_must_match_class_count(tmp_path) -> None:
    path = tmp_path / "labels.txt"
    path.write_text("cat\ndog\n")
    assert read_labels(path, 2) == ["cat", "dog"]
    with pytest.raises(ValueError, match="2 labels but the model has 3"):
        read_labels(path, 3)
