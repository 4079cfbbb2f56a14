"""How a network is run on one test image: the named evaluation protocols.

A test score depends on more than the network: the official test scripts of the four
networks feed the image differently (tiles, crops, no padding at all), clip the output or
not, and score it in their own metric convention. dreamlib names two protocols:

``"dreamlib"`` (the default)
    :func:`dreamlib.models.restore`: the whole image, reflect-padded up to the network's
    spatial multiple (the spec's ``multiple``), the output cropped back to the original
    size. Metric convention: ``"basicsr"`` unless the caller names one. Works for every
    network dreamlib can describe. This is what every dreamlib result so far used.
``"official"``
    the official test script of the network, per network (:data:`OFFICIAL`), for the four
    shipped architectures (any variant). Metric convention: the one of the official
    pipeline (:mod:`dreamlib.metrics`) unless the caller names one.

What ``"official"`` does, per network (each rule follows the file named):

========  ==============================================  ======================  =======  ==========
network   spatial handling                                output clamp            feeds    convention
========  ==============================================  ======================  =======  ==========
HINet     overlapping 256x256 tiles, averaged back        [0, 1] after averaging  RGB      basicsr
MPRNet    the whole image, no padding                     [0, 1]                  RGB      matlab
DuRN      top-left crop to a multiple of 4 (target too)   [0, 1]                  BGR      opencv
AGAN      top-left crop to a multiple of 4 (target too)   none                    BGR      opencv
========  ==============================================  ======================  =======  ==========

- HINet: megvii-model/HINet ``options/test/Rain13k/HINet-*.yml`` (``val: grids: true,
  crop_size: 256``; metrics ``calculate_psnr`` / ``calculate_ssim`` with ``crop_border: 0,
  test_y_channel: true``) and ``basicsr/models/image_restoration_model.py``
  (``grids`` / ``grids_inverse``; tile placement: :func:`tile_starts`); the clamp is BasicSR's
  ``tensor2img(min_max=(0, 1))``, applied to the averaged image. The network sees RGB
  (BasicSR's ``img2tensor(bgr2rgb=True)``).
- MPRNet: swz30/MPRNet ``Deraining/test.py`` (``restored = model(input_)``,
  ``torch.clamp(restored[0], 0, 1)``, PIL RGB input via ``dataset_RGB.py``) and
  ``Deraining/evaluate_PSNR_SSIM.m``. Only the root ``demo.py`` reflect-pads (to a multiple of
  8); ``test.py`` cannot run an image whose sides are not multiples of 8 (swz30/MPRNet issues
  #78 and #136): such an image is refused here with a ``ValueError`` naming its size.
- DuRN: liu-vis/DualResidualNetworks ``test/raindrop.py`` (output clipped with
  ``res[res>1] = 1; res[res<0] = 0``, cast to uint8 by truncation, Y of
  ``COLOR_BGR2YCR_CB``, skimage ``compare_psnr`` / ``compare_ssim``) and
  ``pietorch/data_convertors.py`` (``RainDrop_loader``: ``cv2.imread``, so BGR, and
  ``align_to_k(img, k=4)``: rows and columns beyond the last multiple of 4 dropped, on the
  rainy image and on the ground truth).
- AGAN: rui1996/DeRaindrop ``predict.py`` (``cv2.imread``; ``align_to_four`` on the input and
  the ground truth; ``/255.`` only, no [-1, 1] mapping; ``model(image)[-1]``; ``*255.`` and
  ``np.array(result, dtype='uint8')`` with no clip) and ``metrics.py`` (Y of
  ``COLOR_BGR2YCR_CB``, skimage defaults).

Colour order: "feeds" is what the official scripts give the *released* weights. dreamlib
always feeds a network in its spec's ``channel_order`` (callers speak RGB;
:func:`dreamlib.models.restore` flips for ``"bgr"``). The official DuRN/AGAN weights are
built with ``channel_order="bgr"`` (``models.build(..., "official")``), so they get BGR
exactly as in the official scripts; dreamlib-trained variants (``small``) are RGB networks
and stay RGB under either protocol.

Known remaining differences from the official pipelines (not reproduced):

- AGAN casts unclipped ``out * 255`` to uint8 with numpy; values outside [0, 255] then wrap
  or saturate depending on the platform (undefined in C). dreamlib returns the unclipped
  output, but its metrics clip before the truncation.
- HINet's ``grids()`` on an image side shorter than ``crop_size`` starts the tile at a
  negative index (``i = h - crop_size``), which leaves most of that side uncovered (a
  division by a zero count). dreamlib uses one tile spanning that whole side instead, run
  through :func:`dreamlib.models.restore` (so padded to the network's multiple if needed).
- DuRN/AGAN on a network variant whose spec multiple is larger than 4: the crop to 4 is
  kept and :func:`dreamlib.models.restore` pads the rest (the released networks need 4).
- Images are read with PIL (RGB), the official DuRN/AGAN scripts use OpenCV: identical for
  PNG (RainDrop test_a); JPEG decoders (test_b) may differ by a grey level here and there.
- Files are paired by name (dreamlib's loaders); AGAN's and MPRNet's tools pair by sorted
  order, which is the same on the official layouts.

>>> from dreamlib.protocols import run
>>> pred, target = run(net, x, y, protocol="official")   # (3,h,w) each, the region scored
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["PROTOCOLS", "DEFAULT_PROTOCOL", "DEFAULT_CONVENTION", "OfficialProtocol", "OFFICIAL", "official_protocol",
           "check_protocol", "convention_for", "tile_starts", "tile_positions", "run_tiled", "crop_to_multiple", "run"]

#: The protocol names, the default first.
PROTOCOLS = ("dreamlib", "official")
#: The protocol every dreamlib result used before protocols were named: :func:`dreamlib.models.restore`.
DEFAULT_PROTOCOL = "dreamlib"
#: Metric convention of the ``"dreamlib"`` protocol when the caller names none.
DEFAULT_CONVENTION = "basicsr"


@dataclass(frozen=True)
class OfficialProtocol:
    """One network's official test pipeline, as far as it changes a score.

    Attributes:
        network: dreamlib's name of the architecture.
        spatial: ``"tiles"`` (overlapping ``tile`` x ``tile`` px tiles, averaged back),
            ``"whole"`` (the whole image, no padding) or ``"crop"`` (top-left crop to a multiple
            of ``crop_multiple`` px, input and target).
        tile: tile side in px (``"tiles"`` only).
        crop_multiple: px (``"crop"`` only).
        clamp: the output is clamped to [0, 1] before scoring.
        convention: metric convention of the official evaluation (:mod:`dreamlib.metrics`).
        feeds: colour order the official script gives the released weights (documentation;
            dreamlib feeds the spec's ``channel_order``, see the module docstring).
        follows: the official files the rule follows.
    """

    network: str
    spatial: str
    convention: str
    clamp: bool
    feeds: str
    follows: str
    tile: int | None = None
    crop_multiple: int | None = None


#: The official protocol of each shipped architecture (see the module docstring).
OFFICIAL = {
    "hinet": OfficialProtocol("hinet", "tiles", "basicsr", True, "rgb", tile=256,
                              follows="megvii-model/HINet options/test/Rain13k/HINet-*.yml (grids: true, crop_size: "
                                      "256), basicsr/models/image_restoration_model.py (grids, grids_inverse)"),
    "mprnet": OfficialProtocol("mprnet", "whole", "matlab", True, "rgb",
                               follows="swz30/MPRNet Deraining/test.py, Deraining/evaluate_PSNR_SSIM.m"),
    "durn": OfficialProtocol("durn", "crop", "opencv", True, "bgr", crop_multiple=4,
                             follows="liu-vis/DualResidualNetworks test/raindrop.py, pietorch/data_convertors.py "
                                     "(align_to_k, k=4)"),
    "agan": OfficialProtocol("agan", "crop", "opencv", False, "bgr", crop_multiple=4,
                             follows="rui1996/DeRaindrop predict.py (align_to_four), metrics.py"),
}


def _spec(model):
    from .spec import spec_of

    return spec_of(model)


def official_protocol(model) -> OfficialProtocol:
    """The :class:`OfficialProtocol` of ``model`` (one of the four shipped architectures, any
    variant); a one-line ``ValueError`` for any other network."""
    spec = _spec(model)
    if not spec.builtin or spec.name not in OFFICIAL:
        raise ValueError(f"{spec.name!r} has no official protocol (only {', '.join(OFFICIAL)} have one); "
                         "use protocol='dreamlib'")
    return OFFICIAL[spec.name]


def check_protocol(model, protocol: str) -> None:
    """Raise a one-line ``ValueError`` if ``protocol`` is unknown or ``model`` has no such protocol.

    ``model=None`` (scoring the rainy inputs) has only the ``"dreamlib"`` protocol.
    Cheap: call it before any compute.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    if protocol == "official":
        if model is None:
            raise ValueError("protocol='official' is a network's official test script: it needs a model "
                             "(score the rainy inputs with protocol='dreamlib')")
        official_protocol(model)


def convention_for(model, protocol: str = DEFAULT_PROTOCOL, convention: str | None = None) -> str:
    """The metric convention a score uses: ``convention`` if given, else the protocol's
    (``"dreamlib"``: ``"basicsr"``; ``"official"``: the network's, :data:`OFFICIAL`)."""
    check_protocol(model, protocol)
    if convention is not None:
        from .metrics import _check_convention

        _check_convention(convention)
        return convention
    return DEFAULT_CONVENTION if protocol == "dreamlib" else official_protocol(model).convention


# ------------------------------------------------------------------ tiles (HINet / BasicSR grids)

def tile_starts(n: int, size: int) -> list[int]:
    """Start offsets (px) of the tiles along one image side of ``n`` px, as BasicSR's ``grids()``.

    ``count = ceil(n / size)`` tiles; the step between starts is
    ``ceil((n - size) / (count - 1))`` (``size`` if one tile), so neighbours overlap by
    ``size - step`` px; the tile that would reach or pass the border is moved back to end
    exactly at it (``n - size``) and is the last one. E.g. ``n=520, size=256``: ``[0, 132, 264]``;
    ``n=300``: ``[0, 44]``; ``n=256``: ``[0]``.

    A side shorter than ``size`` gets one tile ``[0]`` of ``n`` px (BasicSR would start it at
    the negative index ``n - size``; see the module docstring).
    """
    n, size = int(n), int(size)
    if n < 1 or size < 1:
        raise ValueError(f"tile_starts needs a positive side and tile size, got n={n}, size={size}")
    if n <= size:
        return [0]
    count = (n - 1) // size + 1
    step = math.ceil((n - size) / (count - 1) - 1e-8)  # the 1e-8 as BasicSR: an exact quotient is not rounded up
    starts, s = [], 0
    while s + size < n:
        starts.append(s)
        s += step
    starts.append(n - size)
    return starts


def tile_positions(h: int, w: int, size: int) -> list[tuple[int, int, int, int]]:
    """``(top, left, tile_h, tile_w)`` of every tile of an ``h`` x ``w`` px image, rows first
    (BasicSR's order); ``tile_h = min(size, h)``, ``tile_w = min(size, w)``."""
    th, tw = min(size, h), min(size, w)
    return [(i, j, th, tw) for i in tile_starts(h, size) for j in tile_starts(w, size)]


def run_tiled(model, x: torch.Tensor, size: int = 256, batch: int = 8) -> torch.Tensor:
    """The network run on overlapping ``size`` x ``size`` tiles of ``x``, averaged back.

    Args:
        x: (1, 3, H, W) RGB in [0, 1] (or (3, H, W)).
        size: tile side in px (HINet's official 256).
        batch: tiles per forward pass (BasicSR runs them all at once; the result is the same
            up to floating-point order).

    Each tile goes through :func:`dreamlib.models.restore` (a 256-px tile needs no padding for
    the shipped networks). Pixel (r, c) of the result is the mean of the outputs of every tile
    covering it (BasicSR's ``grids_inverse``: a sum and a count map). Not clamped.
    Returns (1, 3, H, W).
    """
    from .models import restore

    if x.dim() == 3:
        x = x[None]
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"run_tiled takes one image (1,3,H,W), got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    pos = tile_positions(h, w, size)
    acc = None
    count = torch.zeros(1, 1, h, w, dtype=torch.float32, device=x.device)
    for k in range(0, len(pos), batch):
        chunk = pos[k:k + batch]
        tiles = torch.cat([x[..., i:i + th, j:j + tw] for i, j, th, tw in chunk])
        out = restore(model, tiles)
        if acc is None:
            acc = torch.zeros(1, out.shape[1], h, w, dtype=out.dtype, device=out.device)
        for t, (i, j, th, tw) in enumerate(chunk):
            acc[..., i:i + th, j:j + tw] += out[t:t + 1]
            count[..., i:i + th, j:j + tw] += 1.0
    return acc / count.to(acc.dtype)


def crop_to_multiple(img: torch.Tensor, k: int) -> torch.Tensor:
    """Top-left crop of ``img`` (..., H, W) to ``(H // k * k, W // k * k)`` (DuRN's ``align_to_k``,
    AGAN's ``align_to_four``: the last rows and columns are dropped)."""
    h, w = img.shape[-2:]
    hh, ww = h // k * k, w // k * k
    if hh == 0 or ww == 0:
        raise ValueError(f"a {h}x{w} image has no {k}x{k} px block to keep (cropped to a multiple of {k})")
    return img[..., :hh, :ww]


# ------------------------------------------------------------------ one test image

def run(model, x: torch.Tensor, target: torch.Tensor | None = None, *, protocol: str = DEFAULT_PROTOCOL,
        hw=None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The prediction for one test image under ``protocol``, and the target region it is scored on.

    Args:
        model: a network dreamlib can describe (any, for ``"dreamlib"``; HINet / MPRNet / DuRN /
            AGAN for ``"official"``). Run as it is (put it in eval mode first).
        x: the rainy image, (3, H, W) or (1, 3, H, W), RGB in [0, 1], on the model's device.
        target: its clean image, same size (any device), or ``None``.
        protocol: ``"dreamlib"`` or ``"official"`` (module docstring).
        hw: ``(h, w)`` px of the original image when ``x``/``target`` were padded by a loader
            (their top-left ``h`` x ``w`` px are the image); ``None``: the whole tensors.

    Returns:
        ``(pred, target)``: (3, h', w') float32 CPU tensors, RGB in [0, 1] (AGAN official: not
        clipped), ``target`` cropped exactly as the prediction (``None`` if not given).
        ``"dreamlib"`` and the tiled / whole-image protocols keep ``(h', w') = (h, w)``;
        the crop protocols give ``(h // 4 * 4, w // 4 * 4)``.
    """
    from .models import restore

    check_protocol(model, protocol)
    if x.dim() == 4:
        if x.shape[0] != 1:
            raise ValueError(f"run takes one image, got a batch of {x.shape[0]}")
        x = x[0]
    if target is not None and target.dim() == 4:
        target = target[0]
    h, w = (int(v) for v in (hw if hw is not None else x.shape[-2:]))
    if protocol == "dreamlib":  # unchanged behaviour: restore the (possibly padded) tensor, crop after
        pred = restore(model, x[None])[0].float().cpu()
        return pred[:, :h, :w], (None if target is None else target[:, :h, :w])
    rule = official_protocol(model)
    x = x[:, :h, :w]
    target = None if target is None else target[:, :h, :w]
    if rule.spatial == "tiles":
        pred = run_tiled(model, x[None], size=rule.tile)[0]
    elif rule.spatial == "whole":
        m = _spec(model).multiple
        if h % m or w % m:
            raise ValueError(f"{rule.network}'s official test script ({rule.follows.split(',')[0]}) feeds the whole "
                             f"image without padding, so both sides must be multiples of {m} px; this image is "
                             f"{h}x{w}: crop it, or use protocol='dreamlib' (reflect-pads, as MPRNet's demo.py)")
        pred = restore(model, x[None])[0]  # no padding happens: the size is a multiple already
    else:  # crop
        x = crop_to_multiple(x, rule.crop_multiple)
        target = None if target is None else crop_to_multiple(target, rule.crop_multiple)
        pred = restore(model, x[None])[0]
    pred = pred.float().cpu()
    if rule.clamp:
        pred = pred.clamp(0.0, 1.0)
    return pred, target
