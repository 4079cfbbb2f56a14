"""Tests of dreamlib.data.datasets, dreamlib.data.benchmark and dreamlib.data.samples.

Small folders are written in tmp_path in each real layout (REFERENCE.md §4).
Test images encode their pixel coordinates (R = row, G = column), so crops and
flips can be read back from the returned tensors.
"""
import json
import os
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from dreamlib.data import benchmark, samples
from dreamlib.data.datasets import (PairedImageFolder, find_pairs, open_sets, resolve_set)


# ---------------------------------------------------------------- helpers

def _coord_img(h, w, b):
    """uint8 RGB with R = row, G = column, B = constant (h, w <= 256)."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([yy, xx, np.full((h, w), b)], -1).astype(np.uint8)


def _save(arr, path, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kw)
    return path


def _as_tensor(u8):
    return torch.from_numpy(u8.astype(np.float32) / 255.0).permute(2, 0, 1)


def _read_u8(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _rain13k(set_dir, names=("a", "b", "c"), h=40, w=48, ext=".png"):
    """<set_dir>/{input,target}/<name><ext>; input has B = 200 + i, target B = 100 + i."""
    for i, n in enumerate(names):
        _save(_coord_img(h, w, 200 + i), set_dir / "input" / f"{n}{ext}")
        _save(_coord_img(h, w, 100 + i), set_dir / "target" / f"{n}{ext}")
    return set_dir


def _raindrop(set_dir, ids=("0", "1", "2"), h=40, w=48, ext=".png"):
    for i, n in enumerate(ids):
        _save(_coord_img(h, w, 200 + i), set_dir / "data" / f"{n}_rain{ext}")
        _save(_coord_img(h, w, 100 + i), set_dir / "gt" / f"{n}_clean{ext}")
    return set_dir


# ---------------------------------------------------------------- layouts and pairing

def test_rain13k_layout_pairs_and_values(tmp_path):
    _rain13k(tmp_path / "Rain100L", names=("b", "a", "c"))
    ds = PairedImageFolder(tmp_path, "Rain100L")
    assert ds.layout == "rain13k" and len(ds) == 3
    assert [p.name for p in ds.pairs] == ["a", "b", "c"]  # sorted by name
    item = ds[1]
    assert item["name"] == "b"
    # input b has B = 200 + 0 (written first), target b B = 100 + 0
    assert torch.equal(item["input"], _as_tensor(_coord_img(40, 48, 200)))
    assert torch.equal(item["target"], _as_tensor(_coord_img(40, 48, 100)))
    assert item["input"].dtype == torch.float32 and item["input"].shape == (3, 40, 48)
    assert item["hw"] == (40, 48)


def test_rain13k_values_equal_saved_image_over_255(tmp_path):
    rng = np.random.default_rng(0)
    arr_in = rng.integers(0, 256, (21, 33, 3), dtype=np.uint8)
    arr_tg = rng.integers(0, 256, (21, 33, 3), dtype=np.uint8)
    _save(arr_in, tmp_path / "S" / "input" / "x.png")
    _save(arr_tg, tmp_path / "S" / "target" / "x.png")
    item = PairedImageFolder(tmp_path / "S")[0]  # root may be the set folder itself
    assert torch.equal(item["input"], _as_tensor(arr_in))
    assert torch.equal(item["target"], _as_tensor(arr_tg))
    assert item["input"].min() >= 0 and item["input"].max() <= 1


def test_mprnet_layout(tmp_path):
    _rain13k(tmp_path / "test" / "Test100", names=("1", "2"))
    ds = PairedImageFolder(tmp_path, "Test100")
    assert ds.set_dir == tmp_path / "test" / "Test100"
    assert ds.layout == "rain13k" and len(ds) == 2
    assert torch.equal(ds[0]["target"], _as_tensor(_coord_img(40, 48, 100)))


def test_raindrop_layout_png_and_jpg(tmp_path):
    _raindrop(tmp_path / "test_a", ids=("10", "2", "3"))
    _raindrop(tmp_path / "test_b", ids=("0", "1"), ext=".jpg")
    a = PairedImageFolder(tmp_path, "test_a")
    assert a.layout == "raindrop"
    assert [p.name for p in a.pairs] == ["10", "2", "3"]
    for p in a.pairs:
        assert p.input.name == f"{p.name}_rain.png" and p.target.name == f"{p.name}_clean.png"
    assert torch.equal(a[0]["input"], _as_tensor(_coord_img(40, 48, 200)))
    b = PairedImageFolder(tmp_path, "test_b")
    assert len(b) == 2 and b.pairs[0].input.suffix == ".jpg"
    # JPEG is lossy: the tensor equals the decoded file / 255
    item = b[1]
    assert torch.equal(item["input"], _as_tensor(_read_u8(b.pairs[1].input)))
    assert torch.equal(item["target"], _as_tensor(_read_u8(b.pairs[1].target)))


def test_non_image_files_are_ignored(tmp_path):
    _rain13k(tmp_path / "S", names=("a",))
    (tmp_path / "S" / "input" / "README.txt").write_text("notes")
    (tmp_path / "S" / "target" / "Thumbs.db").write_bytes(b"\0\1")
    assert len(PairedImageFolder(tmp_path, "S")) == 1


def test_limit_takes_first_sorted(tmp_path):
    _rain13k(tmp_path / "S", names=("d", "a", "c", "b"))
    ds = PairedImageFolder(tmp_path, "S", limit=2)
    assert [p.name for p in ds.pairs] == ["a", "b"]


def test_resolve_set_and_find_pairs(tmp_path):
    _raindrop(tmp_path / "test_a")
    d, layout = resolve_set(tmp_path, "test_a")
    assert (d, layout) == (tmp_path / "test_a", "raindrop")
    assert [p.name for p in find_pairs(d, layout)] == ["0", "1", "2"]
    with pytest.raises(ValueError):
        find_pairs(d, "coco")


# ---------------------------------------------------------------- crops, flips, padding

def test_center_crop_position(tmp_path):
    _rain13k(tmp_path / "S", names=("a",), h=40, w=48)
    item = PairedImageFolder(tmp_path, "S", crop=(16, 20), crop_mode="center")[0]
    x, y = item["input"], item["target"]
    assert x.shape == (3, 16, 20) and item["hw"] == (16, 20)
    top, left = (40 - 16) // 2, (48 - 20) // 2  # 12, 14
    assert round(float(x[0, 0, 0]) * 255) == top and round(float(x[1, 0, 0]) * 255) == left
    assert torch.equal(x, _as_tensor(_coord_img(40, 48, 200)[top:top + 16, left:left + 20]))
    assert torch.equal(x[:2], y[:2])


def test_random_crops_seeded_and_paired(tmp_path):
    _rain13k(tmp_path / "S", names=("a", "b", "c", "d"), h=60, w=70)
    ds1 = PairedImageFolder(tmp_path, "S", crop=24, crop_mode="random", seed=5)
    ds2 = PairedImageFolder(tmp_path, "S", crop=24, crop_mode="random", seed=5)
    ds3 = PairedImageFolder(tmp_path, "S", crop=24, crop_mode="random", seed=6)
    corners = []
    for i in range(4):
        a, b = ds1[i], ds2[i]
        assert torch.equal(a["input"], b["input"]) and torch.equal(a["target"], b["target"])
        # input and target are cut at the same place (R, G channels encode the coordinates)
        assert torch.equal(a["input"][:2], a["target"][:2])
        top, left = round(float(a["input"][0, 0, 0]) * 255), round(float(a["input"][1, 0, 0]) * 255)
        assert 0 <= top <= 60 - 24 and 0 <= left <= 70 - 24
        assert torch.equal(a["input"], _as_tensor(_coord_img(60, 70, 200 + i)[top:top + 24, left:left + 24]))
        corners.append((top, left))
    assert len(set(corners)) > 1  # not always the same place
    assert any(not torch.equal(ds1[i]["input"], ds3[i]["input"]) for i in range(4))
    # set_epoch changes the crops deterministically
    ds1.set_epoch(1)
    ds2.set_epoch(1)
    assert any(not torch.equal(ds1[i]["input"], ds3[i]["input"]) for i in range(4))
    assert all(torch.equal(ds1[i]["input"], ds2[i]["input"]) for i in range(4))
    ds2.set_epoch(0)
    assert any(not torch.equal(ds1[i]["input"], ds2[i]["input"]) for i in range(4))


def test_flips_are_consistent(tmp_path):
    _rain13k(tmp_path / "S", names=[f"{i:02d}" for i in range(8)], h=20, w=30)
    ds = PairedImageFolder(tmp_path, "S", flip=True, seed=0)
    flipped = 0
    for i in range(len(ds)):
        it = ds[i]
        x, y = it["input"], it["target"]
        assert torch.equal(x[:2], y[:2])
        cols = (x[1, 0] * 255).round().long().tolist()
        if cols == list(range(29, -1, -1)):
            flipped += 1
        else:
            assert cols == list(range(30))
        # rows never flip (horizontal flips only)
        assert (x[0, :, 0] * 255).round().long().tolist() == list(range(20))
    assert 0 < flipped < len(ds)
    # no flips unless asked
    ds0 = PairedImageFolder(tmp_path, "S")
    assert all((ds0[i]["input"][1, 0] * 255).round().long().tolist() == list(range(30)) for i in range(8))


def test_pad_multiple_reflects(tmp_path):
    rng = np.random.default_rng(1)
    arr_in = rng.integers(0, 256, (37, 45, 3), dtype=np.uint8)
    arr_tg = rng.integers(0, 256, (37, 45, 3), dtype=np.uint8)
    _save(arr_in, tmp_path / "S" / "input" / "x.png")
    _save(arr_tg, tmp_path / "S" / "target" / "x.png")
    item = PairedImageFolder(tmp_path, "S", pad_multiple=8)[0]
    assert item["hw"] == (37, 45)
    assert item["input"].shape == (3, 40, 48) and item["target"].shape == (3, 40, 48)
    ref_in = np.pad(arr_in, ((0, 3), (0, 3), (0, 0)), mode="reflect")
    ref_tg = np.pad(arr_tg, ((0, 3), (0, 3), (0, 0)), mode="reflect")
    assert torch.equal(item["input"], _as_tensor(ref_in))
    assert torch.equal(item["target"], _as_tensor(ref_tg))
    # already a multiple: unchanged
    item4 = PairedImageFolder(tmp_path, "S", crop=(32, 40), pad_multiple=8)[0]
    assert item4["input"].shape == (3, 32, 40) and item4["hw"] == (32, 40)


def test_crop_then_pad(tmp_path):
    _rain13k(tmp_path / "S", names=("a",), h=40, w=48)
    item = PairedImageFolder(tmp_path, "S", crop=(13, 17), pad_multiple=4)[0]
    assert item["hw"] == (13, 17) and item["input"].shape == (3, 16, 20)


# ---------------------------------------------------------------- errors

def test_missing_root_names_layout(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        PairedImageFolder(tmp_path / "nope", "Rain100L")
    assert "<root>/<set>/input" in str(e.value) and "RainDrop" in str(e.value)


def test_missing_set_names_layout_and_contents(tmp_path):
    _rain13k(tmp_path / "Rain100L")
    (tmp_path / "Rain100H" / "rainy").mkdir(parents=True)  # wrong sub-folder names
    with pytest.raises(FileNotFoundError) as e:
        PairedImageFolder(tmp_path, "Rain100H")
    msg = str(e.value)
    assert "Rain100H" in msg and "Rain100L" in msg  # what was asked and what is there
    assert "<root>/test/<set>/input" in msg and "<id>_rain" in msg


def test_unpaired_files_are_listed(tmp_path):
    _rain13k(tmp_path / "S", names=("a", "b"))
    _save(_coord_img(40, 48, 1), tmp_path / "S" / "input" / "orphan_in.png")
    _save(_coord_img(40, 48, 1), tmp_path / "S" / "target" / "orphan_tg.png")
    with pytest.raises(ValueError) as e:
        PairedImageFolder(tmp_path, "S")
    msg = str(e.value)
    assert "input/orphan_in" in msg and "target/orphan_tg" in msg
    assert "input/a" not in msg


def test_unpaired_raindrop_files_are_listed(tmp_path):
    _raindrop(tmp_path / "test_a", ids=("0", "1"))
    _save(_coord_img(40, 48, 1), tmp_path / "test_a" / "data" / "7_rain.png")
    with pytest.raises(ValueError) as e:
        PairedImageFolder(tmp_path, "test_a")
    assert "data/7" in str(e.value) and "_clean" in str(e.value)


def test_empty_folders_raise(tmp_path):
    (tmp_path / "S" / "input").mkdir(parents=True)
    (tmp_path / "S" / "target").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no images"):
        PairedImageFolder(tmp_path, "S")


def test_unreadable_image_raises_value_error(tmp_path):
    _rain13k(tmp_path / "S", names=("a",))
    (tmp_path / "S" / "input" / "x.png").write_text("this is not a png")
    _save(_coord_img(40, 48, 1), tmp_path / "S" / "target" / "x.png")
    ds = PairedImageFolder(tmp_path, "S")
    ds[0]  # the good pair still loads
    with pytest.raises(ValueError) as e:
        ds[1]
    assert "x.png" in str(e.value) and "cannot read" in str(e.value)


def test_grayscale_and_rgba_converted_with_one_warning(tmp_path):
    gray = (np.arange(40 * 48) % 256).astype(np.uint8).reshape(40, 48)
    rgba = np.concatenate([_coord_img(40, 48, 9), np.full((40, 48, 1), 77, np.uint8)], -1)
    _save(gray, tmp_path / "S" / "input" / "a.png")
    _save(_coord_img(40, 48, 3), tmp_path / "S" / "target" / "a.png")
    _save(gray, tmp_path / "S" / "input" / "b.png")
    _save(rgba, tmp_path / "S" / "target" / "b.png")
    ds = PairedImageFolder(tmp_path, "S")
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        a, b = ds[0], ds[1]
        ds[0]
    ours = [w for w in rec if "RGB" in str(w.message)]
    assert len(ours) == 1
    assert a["input"].shape == (3, 40, 48)
    g = torch.from_numpy(gray.astype(np.float32) / 255.0)
    for c in range(3):
        assert torch.equal(a["input"][c], g)  # grey replicated into R, G, B
    assert torch.equal(b["target"], _as_tensor(rgba[..., :3]))  # alpha dropped
    # a second dataset warns again (once per dataset)
    with warnings.catch_warnings(record=True) as rec2:
        warnings.simplefilter("always")
        PairedImageFolder(tmp_path, "S")[0]
    assert len([w for w in rec2 if "RGB" in str(w.message)]) == 1


def test_image_smaller_than_crop_raises(tmp_path):
    _rain13k(tmp_path / "S", names=("a",), h=20, w=30)
    with pytest.raises(ValueError, match="smaller than"):
        PairedImageFolder(tmp_path, "S", crop=25)[0]
    with pytest.raises(ValueError, match="smaller than"):
        PairedImageFolder(tmp_path, "S", crop=(10, 31), crop_mode="random")[0]


def test_pair_size_mismatch_raises(tmp_path):
    _save(_coord_img(20, 30, 1), tmp_path / "S" / "input" / "a.png")
    _save(_coord_img(20, 31, 1), tmp_path / "S" / "target" / "a.png")
    with pytest.raises(ValueError, match="same size"):
        PairedImageFolder(tmp_path, "S")[0]


def test_bad_crop_mode_raises(tmp_path):
    _rain13k(tmp_path / "S", names=("a",))
    with pytest.raises(ValueError, match="crop_mode"):
        PairedImageFolder(tmp_path, "S", crop=8, crop_mode="corner")


# ---------------------------------------------------------------- open_sets

def test_open_sets_finds_set_names_in_paper_order(tmp_path):
    _rain13k(tmp_path / "Rain100L", names=("a",))
    _rain13k(tmp_path / "test" / "Test100", names=("a", "b"))
    _raindrop(tmp_path / "test_a", ids=("0",))
    (tmp_path / "unrelated").mkdir()
    sets = open_sets(tmp_path)
    assert list(sets) == ["Test100", "Rain100L", "test_a"]
    assert [len(s) for s in sets.values()] == [2, 1, 1]
    assert sets["test_a"].layout == "raindrop"
    only = open_sets(tmp_path, sets=["Rain100L"], crop=8)
    assert list(only) == ["Rain100L"] and only["Rain100L"][0]["input"].shape == (3, 8, 8)


def test_open_sets_nothing_found(tmp_path):
    (tmp_path / "foo").mkdir()
    with pytest.raises(FileNotFoundError, match="Rain100L"):
        open_sets(tmp_path)


# ---------------------------------------------------------------- synthetic benchmark

@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    return benchmark.write_benchmark(root, quick=True, progress=False)


def _files(root):
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_benchmark_writes_all_sets(bench):
    cfg = benchmark.default_config(quick=True)
    assert json.loads((bench / "benchmark.json").read_text()) == cfg
    for s, (family, _, _) in benchmark.SETS.items():
        n = cfg["counts"][s]
        if family == "SynRain13k":
            ins = sorted((bench / family / s / "input").iterdir())
            tgs = sorted((bench / family / s / "target").iterdir())
        else:
            ins = sorted((bench / family / s / "data").iterdir())
            tgs = sorted((bench / family / s / "gt").iterdir())
            assert all(p.stem.endswith("_rain") for p in ins) and all(p.stem.endswith("_clean") for p in tgs)
        assert len(ins) == len(tgs) == n, s
        ds = PairedImageFolder(bench / family, s)
        assert len(ds) == n
        item = ds[0]
        assert item["input"].shape == (3, cfg["crop"], cfg["crop"])
        assert not torch.equal(item["input"], item["target"])
    assert set(benchmark.SETS) == {"Test2800", "Test1200", "Test100", "Rain100H", "Rain100L", "test_a", "test_b"}
    assert not list(bench.glob(".writing-*"))  # no leftovers


def test_benchmark_sets_open(bench):
    sets = benchmark.benchmark_sets(bench)
    assert list(sets) == ["Test2800", "Test1200", "Test100", "Rain100H", "Rain100L"]
    drop = benchmark.benchmark_sets(bench, family="SynRainDrop")
    assert list(drop) == ["test_a", "test_b"]


def test_benchmark_targets_are_sample_crops(bench):
    meta = json.loads((bench / "contents.json").read_text())
    test_imgs = samples.load_samples("test")
    size = meta["crop"]
    ds = PairedImageFolder(bench / "SynRain13k", "Rain100L")
    for i, (name, top, left) in enumerate(meta["sets"]["Rain100L"]["crops"]):
        assert name in test_imgs  # only test-role images
        crop = np.round(test_imgs[name][top:top + size, left:left + size] * 255).astype(np.uint8)
        assert torch.equal(ds[i]["target"], _as_tensor(crop))
    used = {c[0] for s in meta["sets"].values() for c in s["crops"]}
    assert used <= {n.rsplit(".", 1)[0] for n in samples.manifest()["test"]}


def test_rain100l_and_rain100h_share_contents(bench):
    base = bench / "SynRain13k"
    lt, ht = _files(base / "Rain100L" / "target"), _files(base / "Rain100H" / "target")
    assert [p.name for p in lt] == [p.name for p in ht]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(lt, ht))
    li, hi = _files(base / "Rain100L" / "input"), _files(base / "Rain100H" / "input")
    assert all(_read_u8(a).tobytes() != _read_u8(b).tobytes() for a, b in zip(li, hi))
    # heavy rain really is heavier
    from dreamlib.metrics import psnr
    pl = np.mean([psnr(_read_u8(a), _read_u8(t)) for a, t in zip(li, lt)])
    ph = np.mean([psnr(_read_u8(a), _read_u8(t)) for a, t in zip(hi, ht)])
    assert ph < pl - 5


def test_benchmark_test_b_is_jpeg(bench):
    for sub in ("data", "gt"):
        files = _files(bench / "SynRainDrop" / "test_b" / sub)
        assert files and all(p.suffix == ".jpg" for p in files)
        with Image.open(files[0]) as im:
            assert im.format == "JPEG"
    for sub in ("data", "gt"):
        with Image.open(_files(bench / "SynRainDrop" / "test_a" / sub)[0]) as im:
            assert im.format == "PNG"


def test_benchmark_deterministic_and_reused(tmp_path):
    root = tmp_path / "b"
    benchmark.write_benchmark(root, quick=True, progress=False)
    first = {p.relative_to(root): p.read_bytes() for p in _files(root)}
    mtimes = {p: p.stat().st_mtime_ns for p in _files(root)}
    # a second call without force reuses the files: nothing is rewritten
    assert benchmark.write_benchmark(root, quick=True, progress=False) == root
    assert {p: p.stat().st_mtime_ns for p in _files(root)} == mtimes
    # force rewrites the same bytes
    os.utime(root / "benchmark.json", ns=(0, 0))
    benchmark.write_benchmark(root, quick=True, force=True, progress=False)
    assert (root / "benchmark.json").stat().st_mtime_ns != 0
    second = {p.relative_to(root): p.read_bytes() for p in _files(root)}
    assert second == first
    # a different seed is a different benchmark (same root: rewritten)
    benchmark.write_benchmark(root, quick=True, seed=1, progress=False)
    third = {p.relative_to(root): p.read_bytes() for p in _files(root)}
    assert json.loads((root / "benchmark.json").read_text())["seed"] == 1
    assert third != first


# ---------------------------------------------------------------- shipped samples

def test_sample_manifest_roles():
    m = samples.manifest()
    assert set(m) == set(samples.ROLES) == {"train", "test", "dream"}
    names = [n for r in samples.ROLES for n in m[r]]
    assert len(names) >= 12
    assert len(names) == len(set(names))  # disjoint roles, no duplicates
    assert all(m[r] for r in samples.ROLES)
    paths = samples.sample_paths()
    assert len(paths) == len(names)
    for p in paths:
        assert p.is_file(), p
        with Image.open(p) as im:
            assert im.mode == "RGB", (p, im.mode)
    for r in samples.ROLES:
        assert [p.name for p in samples.sample_paths(r)] == m[r]


def test_load_samples_values():
    imgs = samples.load_samples("test")
    assert list(imgs) == [n.rsplit(".", 1)[0] for n in samples.manifest()["test"]]
    for name, img in imgs.items():
        assert img.dtype == np.float32 and img.ndim == 3 and img.shape[2] == 3
        assert img.min() >= 0 and img.max() <= 1
        u8 = _read_u8(samples.DATA_SAMPLES / "clean" / f"{name}.png")
        assert np.array_equal(img, u8.astype(np.float32) / 255.0)


def test_samples_errors(tmp_path):
    with pytest.raises(ValueError, match="role"):
        samples.sample_paths("validation")
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        samples.manifest(tmp_path)
