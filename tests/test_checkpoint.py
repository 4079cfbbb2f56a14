"""Tests of dreamlib.models.checkpoint: every on-disk format of REFERENCE.md §1 is written
from our own (small) models and read back; mismatches, broken files and unsafe pickles
are refused with helpful errors."""
import pickle

import pytest
import torch

from dreamlib import models
from dreamlib.models import hinet
from dreamlib.models.checkpoint import (CheckpointError, CheckpointMismatchError, from_checkpoint,
                                        load_checkpoint, read_checkpoint, save_checkpoint)

torch.set_num_threads(1)


def _small(name, seed):
    torch.manual_seed(seed)
    return models.build(name, "small")


def _perturb_buffers(model):
    """Give BatchNorm running stats non-default values so that loading them is visible."""
    with torch.no_grad():
        for k, v in model.state_dict().items():
            if k.endswith("running_mean"):
                v.uniform_(-0.5, 0.5)
            elif k.endswith("running_var"):
                v.uniform_(0.5, 2.0)
            elif k.endswith("num_batches_tracked"):
                v.fill_(17)
    return model


def _assert_same_weights(a, b, skip=()):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        if not any(k.endswith(s) for s in skip):
            assert torch.equal(sa[k], sb[k]), k


def _differs(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return any(not torch.equal(sa[k], sb[k]) for k in sa if sa[k].is_floating_point())


# ---------------------------------------------------------------- formats round trip

@pytest.mark.parametrize("prefix", ["", "module."])
def test_basicsr_params_format(tmp_path, prefix):
    src, dst = _small("hinet", 1), _small("hinet", 2)
    assert _differs(src, dst)
    path = tmp_path / "HINet-Rain13k.pth"
    torch.save({"params": {prefix + k: v for k, v in src.state_dict().items()}}, path)
    meta = load_checkpoint(dst, path)
    assert meta["format"] == "basicsr"
    _assert_same_weights(src, dst)


def test_basicsr_params_ema_format(tmp_path):
    src, dst = _small("hinet", 1), _small("hinet", 2)
    path = tmp_path / "ema.pth"
    torch.save({"params_ema": src.state_dict()}, path)
    assert load_checkpoint(dst, path)["format"] == "basicsr-ema"
    _assert_same_weights(src, dst)


def test_mprnet_format_with_module_prefix(tmp_path):
    src, dst = _small("mprnet", 1), _small("mprnet", 2)
    assert _differs(src, dst)
    opt = torch.optim.Adam(src.parameters(), lr=2e-4)
    path = tmp_path / "model_deraining.pth"
    torch.save({"epoch": 250, "state_dict": {"module." + k: v for k, v in src.state_dict().items()},
                "optimizer": opt.state_dict()}, path)
    meta = load_checkpoint(dst, path)
    assert meta["format"] == "mprnet" and meta["epoch"] == 250
    _assert_same_weights(src, dst)


@pytest.mark.parametrize("name", ["durn", "agan"])
def test_raw_state_dict(tmp_path, name):
    src, dst = _small(name, 1), _small(name, 2)
    _perturb_buffers(src)
    assert _differs(src, dst)
    path = tmp_path / "weights.pt"
    torch.save(src.state_dict(), path)
    assert load_checkpoint(dst, path)["format"] == "raw"
    _assert_same_weights(src, dst)


def test_raw_durn_without_num_batches_tracked(tmp_path):
    """Files from PyTorch < 0.4.1 lack BatchNorm's counter: they still load strictly."""
    src, dst = _perturb_buffers(_small("durn", 1)), _small("durn", 2)
    sd = {k: v for k, v in src.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert len(sd) < len(src.state_dict())  # the small DuRN has BatchNorm
    path = tmp_path / "DuRN_S_P_model.pt"
    torch.save(sd, path)
    before = {k: v.clone() for k, v in dst.state_dict().items() if k.endswith("num_batches_tracked")}
    load_checkpoint(dst, path)
    _assert_same_weights(src, dst, skip=("num_batches_tracked",))
    for k, v in before.items():  # the model keeps its own counters
        assert torch.equal(dst.state_dict()[k], v)


@pytest.mark.parametrize("name", models.MODEL_NAMES)
def test_dreamlib_format_and_from_checkpoint(tmp_path, name):
    src = _perturb_buffers(_small(name, 3)).eval()
    path = tmp_path / "sub" / f"{name}.pth"
    card = {"method": "l1", "sparsity": 0.5}
    assert save_checkpoint(src, path, card=card) == path
    sd, meta = read_checkpoint(path)
    assert meta["format"] == "dreamlib" and meta["model"] == name and meta["variant"] == "small"
    assert meta["card"] == card and meta["config"] == src.dreamlib_config
    dst = _small(name, 4)
    load_checkpoint(dst, path)
    _assert_same_weights(src, dst)
    rebuilt = from_checkpoint(path).eval()
    assert rebuilt.dreamlib_name == name and rebuilt.dreamlib_variant == "small"
    assert rebuilt.dreamlib_card == card
    _assert_same_weights(src, rebuilt)
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        assert torch.equal(models.restore(src, x), models.restore(rebuilt, x))
    assert not list(path.parent.glob(".*.tmp"))  # atomic write left nothing behind


def test_from_checkpoint_with_overrides_recorded(tmp_path):
    torch.manual_seed(0)
    src = models.build("hinet", "small", wf=8).eval()
    path = tmp_path / "h.pth"
    save_checkpoint(src, path)
    rebuilt = from_checkpoint(path).eval()
    assert rebuilt.conv_01.weight.shape[0] == 8
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(models.restore(src, x), models.restore(rebuilt, x))


def test_from_checkpoint_refuses_formats_without_architecture(tmp_path):
    path = tmp_path / "raw.pt"
    torch.save(_small("agan", 0).state_dict(), path)
    with pytest.raises(CheckpointError, match="load_checkpoint"):
        from_checkpoint(path)


# ---------------------------------------------------------------- mismatches

def _meta_official(name):
    with torch.device("meta"):
        return models.build(name, "official")


def test_small_checkpoint_into_official_model(tmp_path):
    path = tmp_path / "small_hinet.pth"
    torch.save({"params": _small("hinet", 0).state_dict()}, path)
    with pytest.raises(CheckpointMismatchError) as e:
        load_checkpoint(_meta_official("hinet"), path)
    msg = str(e.value)
    assert "hinet" in msg and "variant='official'" in msg and "basicsr" in msg
    wf = hinet.CONFIGS["small"]["wf"]
    assert "shape mismatches" in msg
    # a HIN block's 1x1 identity conv: (wf, wf, 1, 1) in the file vs (64, 64, 1, 1) in the model
    assert f"down_path_1.0.identity.weight ({wf}, {wf}, 1, 1) vs (64, 64, 1, 1)" in msg
    assert "missing keys" in msg  # the small variant is also shallower
    assert "build('hinet', variant='small')" in msg
    assert str(path) in msg


def test_official_checkpoint_into_small_model(tmp_path):
    torch.manual_seed(0)
    official = models.build("mprnet", "official")
    path = tmp_path / "model_deraining.pth"
    torch.save({"epoch": 1, "state_dict": official.state_dict(), "optimizer": {}}, path)
    small = _small("mprnet", 0)
    before = {k: v.clone() for k, v in small.state_dict().items()}
    with pytest.raises(CheckpointMismatchError) as e:
        load_checkpoint(small, path)
    msg = str(e.value)
    assert "mprnet" in msg and "variant='small'" in msg
    assert "shape mismatches" in msg and " vs " in msg
    assert "build('mprnet', variant='official')" in msg
    # nothing was loaded
    assert all(torch.equal(before[k], v) for k, v in small.state_dict().items())


def test_other_network_lists_missing_and_unexpected_keys(tmp_path):
    path = tmp_path / "durn.pt"
    torch.save(_small("durn", 0).state_dict(), path)
    with pytest.raises(CheckpointMismatchError) as e:
        load_checkpoint(_small("hinet", 0), path)
    msg = str(e.value)
    assert "missing keys" in msg and "unexpected keys" in msg
    assert "down_path_1.0.identity.weight" in msg  # a HINet key the file lacks
    assert "conv1.weight" in msg  # a DuRN key the model does not have
    assert "build('durn', variant='small')" in msg


def test_partial_checkpoint_no_fit(tmp_path):
    sd = _small("agan", 0).state_dict()
    dropped = sorted(sd)[0]
    sd.pop(dropped)
    path = tmp_path / "partial.pt"
    torch.save(sd, path)
    with pytest.raises(CheckpointMismatchError) as e:
        load_checkpoint(_small("agan", 1), path)
    msg = str(e.value)
    assert "missing keys (1)" in msg and dropped in msg
    assert "no dreamlib model/variant fits" in msg
    # strict=False loads what is there
    dst = _small("agan", 1)
    load_checkpoint(dst, path, strict=False)
    assert torch.equal(dst.state_dict()[sorted(sd)[0]], sd[sorted(sd)[0]])


def test_mismatch_error_is_a_value_error():
    assert issubclass(CheckpointMismatchError, ValueError) and issubclass(CheckpointError, ValueError)


# ---------------------------------------------------------------- broken and unsafe files

def test_truncated_file(tmp_path):
    full = tmp_path / "full.pth"
    torch.save({"params": _small("hinet", 0).state_dict()}, full)
    data = full.read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(_small("hinet", 0), cut)


def test_text_file(tmp_path):
    path = tmp_path / "model.pth"
    path.write_text("<html>404 Not Found</html>\n")
    with pytest.raises(CheckpointError):
        read_checkpoint(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.pth"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError):
        read_checkpoint(path)


def test_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_checkpoint(_small("agan", 0), tmp_path / "nope.pth")
    with pytest.raises(FileNotFoundError):
        read_checkpoint(tmp_path)  # a folder is not a file


class _Payload:
    """Unpickling this would create a file: it must never happen."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_arbitrary_python_object_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"params": {"w": torch.zeros(1)}, "extra": _Payload(marker)}, path)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="weights_only"):
        read_checkpoint(path)
    assert not marker.exists()
    # a plain pickle (not torch.save) with the same payload is refused too
    plain = tmp_path / "evil.pkl"
    plain.write_bytes(pickle.dumps(_Payload(marker), protocol=2))
    with pytest.raises(CheckpointError):
        read_checkpoint(plain)
    assert not marker.exists()


def test_not_a_dict_and_unknown_dict(tmp_path):
    p1 = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], p1)
    with pytest.raises(CheckpointError, match="list"):
        read_checkpoint(p1)
    p2 = tmp_path / "odd.pth"
    torch.save({"weights": {"a": torch.zeros(1)}, "note": "x"}, p2)
    with pytest.raises(CheckpointError, match="weights"):
        read_checkpoint(p2)
