"""Resource limits (issue 15): sizes and compression ratios are checked before a file is read."""

from __future__ import annotations

import io
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

import quantscope as qs
from quantscope.data import Dataset
from quantscope.data.limits import ReadLimits


def _npy_header(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _crafted_npz(path: Path, shape: tuple[int, ...], payload: int = 64) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x.npy", _npy_header(shape) + b"\0" * payload)
    return path


def _bomb(path: Path, mib: int, member: str = "x.npy") -> Path:
    """An .npz whose member inflates to ``mib`` MiB of zeros (written in 1 MiB steps)."""
    rows = mib * (1 << 20) // 4096
    zeros = bytes(1 << 20)
    with (
        zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf,
        zf.open(member, "w", force_zip64=True) as f,
    ):
        f.write(_npy_header((rows, 1024)))
        for _ in range(mib):
            f.write(zeros)
    return path


def test_a_header_claiming_a_huge_shape_is_refused_before_any_allocation(tmp_path: Path) -> None:
    path = _crafted_npz(tmp_path / "crafted.npz", (1 << 29,))  # 2 GiB declared, 64 bytes held
    tracemalloc.start()
    try:
        with pytest.raises(qs.DataError) as info:
            Dataset.from_npz(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20  # without the check NumPy allocates the declared 2 GiB first
    message = str(info.value)
    assert "member 'x' of" in message and "shape (536870912,) float32 = 2.0 GiB" in message
    assert "holds only 64 bytes" in message and "corrupt or crafted" in message
    assert info.value.exit_code == 3


def test_a_header_claiming_10_to_the_12_elements(tmp_path: Path) -> None:
    npz = _crafted_npz(tmp_path / "huge.npz", (10**12,))
    with pytest.raises(qs.DataError, match=r"shape \(1000000000000,\) float32 = 3\.6 TiB"):
        Dataset.from_npz(npz)
    folder = tmp_path / "folder"
    folder.mkdir()
    _crafted_npz(folder / "a.npz", (10**12,))
    with pytest.raises(qs.DataError, match="corrupt or crafted"):
        Dataset.from_folder(folder)
    npy = tmp_path / "huge.npy"
    npy.write_bytes(_npy_header((10**12,)) + b"\0" * 64)
    with pytest.raises(qs.DataError, match=r"huge\.npy declares an array of shape \(1000000000000,\)"):
        Dataset.from_npz(npy)


def test_a_zip_bomb_is_refused_with_the_numbers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _bomb(tmp_path / "bomb.npz", 72)
    assert path.stat().st_size < 1 << 20
    with pytest.raises(qs.DataError) as info:
        Dataset.from_npz(path)
    message = str(info.value)
    assert "inflates from" in message and "to 72.0 MiB" in message and "compression ratio of" in message
    assert "(limit 200)" in message and "QUANTSCOPE_MAX_COMPRESSION_RATIO" in message
    monkeypatch.setenv("QUANTSCOPE_MAX_COMPRESSION_RATIO", "5000")
    monkeypatch.setenv("QUANTSCOPE_MAX_ARRAY_BYTES", "16M")
    with pytest.raises(qs.DataError) as info:
        Dataset.from_npz(path)
    message = str(info.value)
    assert "holds arrays of 72.0 MiB" in message and "limit of 16.0 MiB" in message
    assert "QUANTSCOPE_MAX_ARRAY_BYTES" in message and "max_bytes=" in message
    with pytest.raises(qs.DataError, match=r"limit of 1\.0 KiB"):
        Dataset.from_npz(path, max_bytes=1024)


def test_a_bomb_in_a_member_that_is_not_an_array(tmp_path: Path) -> None:
    path = _bomb(tmp_path / "other.npz", 72, member="notes.bin")
    with pytest.raises(qs.DataError, match=r"member 'notes\.bin' of .* inflates from"):
        Dataset.from_npz(path)


def test_unreadable_file_says_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 3), np.float32))

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(zipfile, "ZipFile", refuse)
    with pytest.raises(qs.DataError, match="permission denied; make the file readable"):
        Dataset.from_npz(tmp_path / "d.npz")


def test_genuine_files_still_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    x = np.zeros((64, 1024), np.float32)  # compresses ~1000:1 but is small: never called a bomb
    np.savez_compressed(tmp_path / "zeros.npz", x=x, labels=np.arange(64))
    assert Dataset.from_npz(tmp_path / "zeros.npz").num_samples == 64
    np.save(tmp_path / "x.npy", x)
    assert Dataset.from_npz(tmp_path / "x.npy").num_samples == 64
    monkeypatch.setenv("QUANTSCOPE_MAX_ARRAY_BYTES", "100")
    assert Dataset.from_npz(tmp_path / "x.npy").num_samples == 64  # memory-mapped: not limited
    with pytest.raises(qs.DataError, match="limit of 100 bytes"):
        Dataset.from_npz(tmp_path / "zeros.npz")


def test_limit_settings_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ReadLimits.resolve(1234).max_bytes == 1234
    monkeypatch.setenv("QUANTSCOPE_MAX_ARRAY_BYTES", "2G")
    assert ReadLimits.resolve().max_bytes == 2 << 30
    monkeypatch.setenv("QUANTSCOPE_MAX_ARRAY_BYTES", "lots")
    with pytest.raises(qs.ConfigError, match="QUANTSCOPE_MAX_ARRAY_BYTES='lots' is not a positive size"):
        ReadLimits.resolve()
    with pytest.raises(qs.ConfigError, match="max_bytes must be a positive integer"):
        ReadLimits.resolve(-1)


def test_the_cli_refuses_a_crafted_calib_file_with_exit_3(tmp_path: Path) -> None:
    from click.testing import CliRunner

    import tinymodels
    from quantscope import cli

    model = tinymodels.save(tinymodels.mlp(), tmp_path / "mlp.onnx")
    calib = _crafted_npz(tmp_path / "calib.npz", (10**12,))
    out = tmp_path / "q.onnx"
    args = ["quantize", str(model), "--calib", str(calib), "-o", str(out)]
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == 3, result.output
    text = " ".join(result.output.split())
    assert "3.6 TiB" in text and "corrupt or crafted" in text and not out.exists()
