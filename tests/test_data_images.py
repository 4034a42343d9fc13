"""tltf.data images and folders: every format and mode, malformed files, splits, openclipart."""

from __future__ import annotations

import io
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

import tltf
from tltf.errors import DataError

SPEC = {"shape": [8, 8, 3], "dtype": "float32"}
OPENCLIPART = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "openclipart")


def solid(color, size=(12, 10), mode="RGB"):
    return Image.new("RGB", size, color).convert(mode)


def save(path, image, fmt=None, **kwargs):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image.save(path, fmt, **kwargs)
    return str(path)


def make_classes(root, per_class=3, ext="png"):
    for c, color in (("cat", (200, 30, 30)), ("dog", (30, 30, 200))):
        for i in range(per_class):
            save(root / c / f"{i}.{ext}", solid(color))
    return root


def pixels(data, spec=SPEC):
    """All images of `data` (eval order), as float arrays, with their labels."""
    batches = list(data.as_tf_dataset(64, training=False, input_spec=spec))
    return np.concatenate([x.numpy() for x, _ in batches]), [int(v) for _, y in batches for v in y]


def bomb_png(width, height):
    """A valid PNG header that claims width x height pixels, with a tiny body."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)

    def chunk(kind, body):
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def test_every_format_and_mode_becomes_rgb(tmp_path):
    red = (220, 20, 20)
    cases = {
        "jpeg_rgb.jpg": (solid(red), "JPEG"),
        "jpeg_grey.jpeg": (solid(red, mode="L"), "JPEG"),
        "jpeg_cmyk.jpg": (solid(red, mode="CMYK"), "JPEG"),
        "png_rgba.png": (solid(red, mode="RGBA"), "PNG"),
        "png_palette.png": (solid(red, mode="P"), "PNG"),
        "png_grey_alpha.png": (solid(red, mode="LA"), "PNG"),
        "png_16bit.png": (Image.fromarray(np.full((10, 12), 40000, np.uint16)), "PNG"),
        "gif.gif": (solid(red, mode="P"), "GIF"),
        "bmp_rgb.bmp": (solid(red), "BMP"),
        "bmp_palette.bmp": (solid(red, mode="P"), "BMP"),
        "bmp_grey.bmp": (solid(red, mode="L"), "BMP"),
    }
    for name, (image, fmt) in cases.items():
        save(tmp_path / "a" / name, image, fmt)
    frames = [solid(red, mode="P"), solid((0, 0, 255), mode="P")]
    frames[0].save(tmp_path / "a" / "animated.gif", save_all=True, append_images=frames[1:])
    save(tmp_path / "b" / "x.png", solid((0, 0, 0)))
    data = tltf.data.from_directory(tmp_path, verbose=False)
    assert data.modality == "image" and data.counts() == {"a": 12, "b": 1}
    assert data.skipped == []
    images, labels = pixels(data)
    assert images.shape == (13, 8, 8, 3) and labels == [0] * 12 + [1]
    names = [os.path.basename(p) for p in data.locations]
    grey = round(0.299 * 220 + 0.587 * 20 + 0.114 * 20)
    expected = {
        "jpeg_grey.jpeg": (grey,) * 3,
        "png_grey_alpha.png": (grey,) * 3,
        "bmp_grey.bmp": (grey,) * 3,
        "png_16bit.png": (40000 >> 8,) * 3,
    }
    for name, image in zip(names[:12], images[:12], strict=True):
        want = expected.get(name, red)
        assert np.abs(image[4, 4] - want).max() <= 10, (name, image[4, 4])


def test_corrupt_truncated_and_non_image_files_are_skipped_and_counted(tmp_path, capsys):
    make_classes(tmp_path / "pets")
    good = io.BytesIO()
    solid((1, 2, 3), size=(64, 64)).save(good, "JPEG")
    (tmp_path / "pets" / "cat" / "truncated.jpg").write_bytes(good.getvalue()[:300])
    (tmp_path / "pets" / "cat" / "garbage.png").write_bytes(b"this is not a png at all")
    (tmp_path / "pets" / "dog" / "empty.jpg").write_bytes(b"")
    (tmp_path / "pets" / "dog" / "notes.doc").write_text("hello")
    (tmp_path / "pets" / "README.md").write_text("about the pets")
    (tmp_path / "pets" / "dog" / ".DS_Store").write_bytes(b"\0\1")
    data = tltf.data.from_directory(tmp_path / "pets")
    assert data.counts() == {"cat": 3, "dog": 3}
    reasons = {os.path.basename(p): why for p, why in data.skipped}
    assert reasons == {
        "README.md": "not in a class folder",
        "notes.doc": "not an image file",
        "truncated.jpg": "corrupt",
        "garbage.png": "not an image",
        "empty.jpg": "not an image",
    }
    line = capsys.readouterr().out.strip()
    assert line.count("\n") == 0
    assert "6 image examples, 2 classes (cat 3, dog 3); skipped 5 files:" in line
    assert "1 corrupt (truncated.jpg)" in line and "2 not an image (garbage.png, empty.jpg)" in line
    images, _ = pixels(data)  # the pipeline never meets a bad file
    assert images.shape == (6, 8, 8, 3)
    with pytest.raises(DataError, match=r"garbage\.png: not an image \(unknown.*strict=False"):
        tltf.data.from_directory(tmp_path / "pets", strict=True)
    os.remove(tmp_path / "pets" / "cat" / "garbage.png")
    with pytest.raises(DataError, match=r"truncated\.jpg: corrupt or truncated image file"):
        tltf.data.from_directory(tmp_path / "pets", strict=True)


def test_pixel_limit_refuses_decompression_bombs(tmp_path):
    make_classes(tmp_path)
    (tmp_path / "cat" / "bomb.png").write_bytes(bomb_png(40_000, 40_000))
    with pytest.raises(DataError) as err:
        tltf.data.from_directory(tmp_path)
    message = str(err.value)
    assert "bomb.png has 1,600,000,000 pixels, over the limit of 89,478,485" in message
    assert "max_pixels=" in message
    # under Pillow's own hard limit, over tltf's
    (tmp_path / "cat" / "bomb.png").write_bytes(bomb_png(10_000, 10_000))
    with pytest.raises(DataError, match=r"bomb\.png has 10000x10000 = 100,000,000 pixels"):
        tltf.data.from_directory(tmp_path)
    os.remove(tmp_path / "cat" / "bomb.png")
    with pytest.raises(DataError, match=r"0\.png has 12x10 = 120 pixels, over the limit of 100 "):
        tltf.data.from_directory(tmp_path, max_pixels=100)


def test_empty_class_folder_and_single_class(tmp_path):
    make_classes(tmp_path / "d")
    os.makedirs(tmp_path / "d" / "bird")
    with pytest.raises(DataError, match=r"bird: class folder 'bird' has no usable image files"):
        tltf.data.from_directory(tmp_path / "d")
    (tmp_path / "d" / "bird" / "broken.jpg").write_bytes(b"\xff\xd8\xff broken")
    with pytest.raises(DataError, match=r"no usable image files; skipped 1 file: 1 not an image"):
        tltf.data.from_directory(tmp_path / "d")
    save(tmp_path / "one" / "cat" / "a.png", solid((0, 0, 0)))
    with pytest.raises(DataError, match=r"found 1 class folder\(s\) \['cat'\].*at least 2"):
        tltf.data.from_directory(tmp_path / "one")
    with pytest.raises(DataError, match="does not exist"):
        tltf.data.from_directory(tmp_path / "missing")


def test_a_lone_train_folder_is_the_training_set(tmp_path):
    make_classes(tmp_path / "train", per_class=4)  # openclipart/source's layout
    data = tltf.data.from_directory(tmp_path, verbose=False)
    assert data.counts() == {"cat": 4, "dog": 4} and data.split == "train"
    train, val = tltf.data.from_directory(tmp_path, validation_split=0.25, verbose=False)
    assert train.counts() == {"cat": 3, "dog": 3} and val.counts() == {"cat": 1, "dog": 1}


def test_existing_split_is_detected(tmp_path, capsys):
    make_classes(tmp_path / "train", per_class=4)
    make_classes(tmp_path / "test", per_class=1)
    train, test = tltf.data.from_directory(tmp_path)
    assert (train.split, test.split) == ("train", "test")
    assert train.counts() == {"cat": 4, "dog": 4} and test.counts() == {"cat": 1, "dog": 1}
    assert " | " in capsys.readouterr().out
    train, val, test = tltf.data.from_directory(tmp_path, validation_split=0.25, verbose=False)
    assert train.counts() == {"cat": 3, "dog": 3} and val.counts() == {"cat": 1, "dog": 1}
    assert len(test) == 2
    make_classes(tmp_path / "val", per_class=1)
    assert [p.split for p in tltf.data.from_directory(tmp_path, verbose=False)] == [
        "train",
        "validation",
        "test",
    ]
    with pytest.raises(DataError, match="already has a val/ folder"):
        tltf.data.from_directory(tmp_path, validation_split=0.2)


def test_test_class_never_seen_in_training_is_refused(tmp_path):
    make_classes(tmp_path / "train")
    make_classes(tmp_path / "test", per_class=1)
    save(tmp_path / "test" / "fox" / "0.png", solid((9, 9, 9)))
    with pytest.raises(DataError) as err:
        tltf.data.from_directory(tmp_path)
    assert "test/fox: class folder 'fox' is not one of the classes ['cat', 'dog']" in str(err.value)


def test_text_folders(tmp_path):
    for c, words in (("games", "play the game"), ("math", "solve the equation")):
        os.makedirs(tmp_path / c)
        for i in range(3):
            (tmp_path / c / f"{i}.txt").write_text(f"{words} {i}\n", encoding="utf-8")
    data = tltf.data.from_directory(tmp_path, verbose=False)
    assert data.modality == "text" and data.x[0] == "play the game 0"
    assert data.counts() == {"games": 3, "math": 3}
    x, y = next(
        iter(data.as_tf_dataset(6, training=False, input_spec={"shape": [], "dtype": "string"}))
    )
    assert x.numpy()[3] == b"solve the equation 0" and y.numpy().tolist() == [0, 0, 0, 1, 1, 1]
    (tmp_path / "math" / "latin1.txt").write_bytes(b"first line\nnum\xe9ro\n")
    with pytest.raises(DataError, match=r"latin1\.txt line 2: not valid UTF-8"):
        tltf.data.from_directory(tmp_path)
    (tmp_path / "math" / "latin1.txt").write_text("  \n")
    with pytest.raises(DataError, match=r"latin1\.txt: empty text file"):
        tltf.data.from_directory(tmp_path)


def test_image_pipeline_is_seeded_complete_and_cached(tmp_path):
    for i in range(10):
        save(tmp_path / ("a" if i % 2 else "b") / f"{i}.png", solid((i * 20, 0, 0)))
    data = tltf.data.from_directory(tmp_path, verbose=False)

    def epoch(seed, cache):
        ds = data.as_tf_dataset(4, training=True, input_spec=SPEC, seed=seed, cache=cache)
        return [(x.numpy()[:, 0, 0, 0].tolist(), y.numpy().tolist()) for x, y in ds]

    first = epoch(5, None)
    assert first == epoch(5, None) and first != epoch(6, None)
    assert [len(y) for _, y in first] == [4, 4, 2]
    reds = sorted(r for rs, _ in first for r in rs)
    assert reds == [float(i * 20) for i in range(10)]
    assert all((int(r) // 20) % 2 == 1 - y for rs, ys in first for r, y in zip(rs, ys, strict=True))
    uncached = epoch(5, False)
    assert sorted(r for rs, _ in uncached for r in rs) == reds


def test_csv_with_image_paths(tmp_path):
    make_classes(tmp_path / "img", per_class=2)
    (tmp_path / "img" / "bad.jpg").write_bytes(b"nope")
    rows = "path,label\nimg/cat/0.png,cat\nimg/dog/0.png,dog\nimg/bad.jpg,dog\nimg/gone.png,cat\n"
    (tmp_path / "images.csv").write_text(rows)
    data = tltf.data.from_csv(tmp_path / "images.csv", image_column="path", verbose=False)
    assert data.modality == "image" and len(data) == 2
    assert data.locations == [
        f"{tmp_path / 'images.csv'} line 2",
        f"{tmp_path / 'images.csv'} line 3",
    ]
    assert sorted(why for _, why in data.skipped) == ["missing", "not an image"]
    images, labels = pixels(data)
    assert labels == [0, 1] and images[0, 0, 0].tolist() == [200, 30, 30]


def test_load_image_matches_the_training_pipeline(tmp_path):
    path = save(
        tmp_path / "a" / "x.jpg",
        Image.fromarray((np.arange(300) % 255).astype(np.uint8).reshape(10, 10, 3)),
    )
    save(tmp_path / "b" / "y.jpg", solid((0, 0, 0)))
    data = tltf.data.from_directory(tmp_path, verbose=False)
    with open(path, "rb") as f:
        direct = tltf.data.load_image(f.read(), 8, 8).numpy()
    np.testing.assert_array_equal(pixels(data)[0][0], direct)


def test_augmentation_presets():
    import keras

    images = np.random.default_rng(0).uniform(0, 255, size=(2, 16, 16, 3)).astype("float32")
    for preset in tltf.data.AUGMENTATION_PRESETS:
        layers = tltf.data.augmentation_layers(preset, seed=1)
        assert isinstance(layers, keras.Sequential)
        np.testing.assert_allclose(layers(images, training=False), images)
    strong = tltf.data.augmentation_layers("strong", seed=1)
    assert [type(layer).__name__ for layer in strong.layers] == [
        "RandomFlip",
        "RandomRotation",
        "RandomZoom",
        "RandomTranslation",
        "RandomContrast",
    ]
    assert not np.allclose(strong(images, training=True), images)
    with pytest.raises(DataError, match="use one of"):
        tltf.data.augmentation_layers("medium")


@pytest.mark.skipif(not os.path.isdir(OPENCLIPART), reason="shared openclipart data not present")
def test_openclipart_target():
    train, test = tltf.data.from_directory(os.path.join(OPENCLIPART, "target"), verbose=False)
    expected_train = {
        "animals": 193,
        "food": 198,
        "people": 198,
        "plants": 58,
        "tools": 119,
        "transportation": 184,
    }
    expected_test = {
        "animals": 30,
        "food": 30,
        "people": 30,
        "plants": 26,
        "tools": 30,
        "transportation": 29,
    }
    assert train.counts() == expected_train and test.counts() == expected_test
    assert train.skipped == test.skipped == []
    assert train.class_names == sorted(expected_train) and train.modality == "image"
    weights = train.class_weight("balanced")
    assert weights[train.class_names.index("plants")] == pytest.approx(950 / (6 * 58))
    x, y = next(
        iter(
            test.as_tf_dataset(
                16, training=False, input_spec={"shape": [32, 32, 3], "dtype": "float32"}
            )
        )
    )
    assert x.shape == (16, 32, 32, 3) and float(x.numpy().max()) <= 255.0 and y.numpy()[0] == 0


def _transparent_files(root):
    """A red dot on a clear background in each format that carries transparency."""
    clear = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    clear.putpixel((0, 0), (255, 0, 0, 255))
    palette = Image.new("P", (8, 8), 0)
    palette.putpalette([0, 0, 0, 255, 0, 0])
    palette.putpixel((0, 0), 1)
    return [
        save(root / "a" / "rgba.png", clear),
        save(root / "a" / "la.png", clear.convert("LA")),
        save(root / "b" / "palette.png", palette, transparency=0),
        save(root / "b" / "palette.gif", palette, transparency=0),
    ]


def test_transparency_is_flattened_onto_white_in_training_and_serving_alike(tmp_path, capsys):
    files = _transparent_files(tmp_path)
    save(tmp_path / "b" / "opaque.jpg", solid((0, 0, 200), (8, 8)))
    data = tltf.data.from_directory(tmp_path)
    assert "4 with transparency, flattened onto the background (white)" in capsys.readouterr().out
    got, _ = pixels(data)
    by_name = dict(zip([os.path.basename(p) for p in data.locations], got, strict=True))
    for name in ("rgba.png", "la.png", "palette.png", "palette.gif"):
        image = by_name[name]
        np.testing.assert_allclose(image[7, 7], [255, 255, 255], atol=1)  # was clear: white
        assert image[0, 0].max() - image[0, 0].min() > 50 or name == "la.png"  # the dot stays
    assert by_name["opaque.jpg"][4, 4, 2] > 150  # opaque images are untouched
    import tensorflow as tf

    for path in files[:3]:  # the serving graph's decode: the same pixels (not GIF: below)
        served = tltf.data.load_image(tf.io.read_file(path), 8, 8).numpy()
        np.testing.assert_allclose(served, by_name[os.path.basename(path)], atol=1)


def test_background_is_configurable_and_checked(tmp_path):
    _transparent_files(tmp_path)
    data = tltf.data.from_directory(tmp_path, verbose=False)
    model = tltf.build(
        "keras:MobileNetV2",
        class_names=data.class_names,
        weights=None,
        input_shape=(32, 32, 3),
        background=(0, 0, 0),
    )
    spec = tltf.info(model)["input_spec"]
    assert spec["background"] == [0.0, 0.0, 0.0]
    image, _ = pixels(data, spec)
    np.testing.assert_allclose(image[0, 31, 31], [0, 0, 0], atol=1)
    with pytest.raises(tltf.errors.SpecError, match="background="):
        tltf.build("keras:MobileNetV2", num_classes=2, weights=None, background=300)
