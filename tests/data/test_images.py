"""Dataset.from_images: folders, lists, class sub-folders, the declared preprocessing, streaming."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from data_helpers import F32, collect, spec, stacked

import quantscope as qs
from quantscope.data import UNNAMED, Dataset, ImagePreprocess

Image = pytest.importorskip("PIL.Image")


def _save(path: Path, value: int, size: tuple[int, int] = (12, 8), mode: str = "RGB") -> Path:
    """An image of ``size`` (width, height) whose pixel (x, y) is value + x + 10 * y (per channel)."""
    w, h = size
    x, y = np.meshgrid(np.arange(w), np.arange(h))
    base = (value + x + 10 * y).astype(np.uint8)
    arr = np.stack([base, base + 1, base + 2], axis=-1) if mode == "RGB" else base
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode).save(path)
    return path


@pytest.fixture
def classes(tmp_path: Path) -> Path:
    root = tmp_path / "imgs"
    _save(root / "dog" / "a.png", 0)
    _save(root / "cat" / "b.png", 10)
    _save(root / "cat" / "sub" / "c.png", 20)
    _save(root / "dog" / "d.bmp", 30)
    (root / "notes.txt").write_text("not an image")
    _save(root / ".hidden" / "e.png", 40)
    return root


def test_folder_is_recursive_sorted_and_labelled_by_class_folder(classes: Path) -> None:
    ds = Dataset.from_images(classes, labels="folders")
    assert ds.num_samples == 4 and ds.input_names == (UNNAMED,)
    assert ds.classes == ("cat", "dog")
    np.testing.assert_array_equal(ds.labels, [0, 0, 1, 1])  # cat/b, cat/sub/c, dog/a, dog/d
    assert ds.meta["class"].tolist() == ["cat", "cat", "dog", "dog"]
    x = stacked(collect(ds.bind([spec("image", F32, ("N", 3, 8, 12))]), 3))["image"]
    assert x.shape == (4, 3, 8, 12) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, :, 0, 0], np.array([10, 11, 12]) / 255, rtol=1e-6)  # cat/b.png
    np.testing.assert_allclose(x[2, 1, 2, 3], (0 + 3 + 20 + 1) / 255, rtol=1e-6)  # dog/a.png, green


def test_preprocess_resize_crop_normalise_layout_and_grey(tmp_path: Path) -> None:
    path = _save(tmp_path / "wide.png", 0, size=(40, 20))
    pre = ImagePreprocess(resize=10, center_crop=(8, 6), mean=(0.5,), std=(0.25,), layout="NHWC")
    (batch,) = collect(Dataset.from_images([path], preprocess=pre), 1)
    x = batch.inputs[UNNAMED]
    assert x.shape == (1, 8, 6, 3) and x.dtype == np.float32  # short side 20 -> 10: 20x10, crop 6x8
    resized = np.asarray(Image.open(path).convert("RGB").resize((20, 10), Image.BILINEAR), np.float64)
    expected = (resized[1:9, 7:13] / 255 - 0.5) / 0.25
    np.testing.assert_allclose(x[0], expected, rtol=1e-5, atol=1e-5)
    grey = ImagePreprocess(color="grey", dtype="uint8", scale=1)
    (g,) = collect(Dataset.from_images([path], preprocess=grey), 1)
    assert g.inputs[UNNAMED].shape == (1, 1, 20, 40) and g.inputs[UNNAMED].dtype == np.uint8
    imagenet = ImagePreprocess.imagenet(32)
    assert (imagenet.resize, imagenet.center_crop) == (37, (32, 32))


def test_transform_hooks(tmp_path: Path) -> None:
    paths = [_save(tmp_path / f"{i}.png", i) for i in range(3)]
    flipped = Dataset.from_images(paths, transform=lambda a: a[:, :, ::-1])
    plain = Dataset.from_images(paths)
    np.testing.assert_array_equal(collect(flipped, 3)[0].inputs[UNNAMED], collect(plain, 3)[0].inputs[UNNAMED][..., ::-1])
    custom = Dataset.from_images(paths, preprocess=None, transform=lambda im: np.zeros((2, 2), np.float32) + im.size[0])
    assert collect(custom, 3)[0].inputs[UNNAMED].tolist() == [[[12, 12], [12, 12]]] * 3
    np.testing.assert_array_equal(Dataset.from_images(paths, labels=[2, 1, 0]).labels, [2, 1, 0])


def test_streams_from_disk_is_reiterable_and_takes_deterministically(tmp_path: Path) -> None:
    paths = [_save(tmp_path / "many" / f"{i:03d}.png", i) for i in range(20)]
    ds = Dataset.from_images(tmp_path / "many")
    paths[5].unlink()  # nothing was read when the dataset was made; reading sample 5 fails, named
    with pytest.raises(qs.DataError, match=r"cannot read image .*005\.png"):
        collect(ds, 4)
    _save(paths[5], 5)
    a = ds.take(5, seed=3)
    assert [int(b.inputs[UNNAMED][0, 0, 0, 0] * 255 + 0.5) for b in collect(a, 1)] == \
           [int(b.inputs[UNNAMED][0, 0, 0, 0] * 255 + 0.5) for b in collect(ds.take(5, seed=3), 1)]
    assert ds.fingerprint() == ds.fingerprint()


def test_errors_name_the_problem(tmp_path: Path, classes: Path) -> None:
    with pytest.raises(qs.ConfigError, match="center_crop must be a positive int"):
        ImagePreprocess(center_crop=0)
    with pytest.raises(qs.ConfigError, match=r"layout must be one of \['NCHW', 'NHWC'\]"):
        ImagePreprocess(layout="CHW")  # type: ignore[arg-type]
    with pytest.raises(qs.ConfigError, match="mean needs 1 or 3 finite numbers"):
        ImagePreprocess(mean=(0.1, 0.2))
    with pytest.raises(qs.ConfigError, match="keeps raw pixel values"):
        ImagePreprocess(dtype="uint8")
    small = _save(tmp_path / "small.png", 0, size=(4, 4))
    with pytest.raises(qs.DataError, match=r"small\.png is 4x4 .* smaller than center_crop 8x8"):
        collect(Dataset.from_images([small], preprocess=ImagePreprocess(center_crop=8)), 1)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(qs.DataError, match=r"cannot read image .*broken\.png"):
        collect(Dataset.from_images([broken]), 1)
    with pytest.raises(qs.DataError, match="image file"):
        Dataset.from_images([tmp_path / "absent.png"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(qs.EmptyDatasetError, match="holds no images"):
        Dataset.from_images(tmp_path / "empty")
    _save(classes / "loose.png", 0)
    with pytest.raises(qs.DataError, match="outside class sub-folders"):
        Dataset.from_images(classes, labels="folders")


def test_from_path_picks_images_when_the_folder_holds_no_npz(tmp_path: Path, classes: Path) -> None:
    ds = Dataset.from_path(classes, labels="folders")
    assert ds.classes == ("cat", "dog") and ds.num_samples == 4
    assert Dataset.from_path(_save(tmp_path / "one.jpg", 0)).num_samples == 1
    np.savez(classes / "x.npz", x=np.zeros((2, 3), np.float32))
    assert Dataset.from_path(classes).input_names == ("x",)  # an .npz in it: a folder of arrays
    with pytest.raises(qs.ConfigError, match=r"\['labels_key'\] do not apply to an image folder"):
        (classes / "x.npz").unlink()
        Dataset.from_path(classes, labels_key="y")


def test_pillow_is_imported_only_when_images_are_read(classes: Path) -> None:
    code = (
        "import sys; from quantscope.data import Dataset; "
        f"ds = Dataset.from_images({str(classes)!r}, labels='folders'); "
        "assert 'PIL' not in sys.modules, 'imported before reading'; "
        "next(iter(ds.batches(1))); assert 'PIL' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_quantize_a_conv_model_from_a_folder_of_images(tmp_path: Path, classes: Path) -> None:
    import tinymodels

    model = qs.load(tinymodels.save(tinymodels.conv_bn_relu(), tmp_path / "conv.onnx"))
    calib = Dataset.from_images(classes, preprocess=ImagePreprocess(resize=16, center_crop=16))
    q = qs.quantize(model, qs.StaticInt8(num_samples=4), calib)
    assert q.calibration["samples"] == 4
