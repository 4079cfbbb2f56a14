"""The paper's observation (Sec. 3.1, Figs. 2 and 8): deep features group by rain type, not content.

>>> from dreamlib import observe
>>> obs = observe.observation_set()                      # same contents under every rain kind
>>> feats = observe.extract_features(teacher, None, obs.images)   # (N, C), teacher's feature layer
>>> observe.grouping_report(feats, obs.rain_labels, obs.content_labels)
{'rain': {'silhouette': 0.41, 'knn_accuracy': 0.97, ...}, 'content': {...}, 'rain_wins': True, ...}
>>> xy = observe.tsne_embed(feats)                       # (N, 2) for a scatter plot

Geometry used throughout (the same as the paper's ``F`` in Eq. 4): a feature map
is global-average-pooled to one C-vector per image and the vectors are
L2-normalised. Distances are Euclidean between the normalised vectors, which is
the chordal form of the cosine distance (``|a - b|^2 = 2 - 2 cos(a, b)``), so
the silhouette and the k-NN neighbours are exactly those of cosine similarity.
Normalising removes the overall activation magnitude, which follows image
brightness/contrast rather than the kind of degradation.
"""
from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from . import settings

__all__ = [
    "layer_output", "extract_features", "pool_features", "tsne_embed", "cluster_scores", "grouping_report",
    "ObservationSet", "observation_set", "benchmark_observation_set", "cross_model_features",
]


# ------------------------------------------------------------------ capturing a layer

def _first_tensor(output) -> torch.Tensor:
    """The module output itself, or the first tensor of a tuple/list output."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        for item in output:
            if isinstance(item, torch.Tensor):
                return item
    raise TypeError(f"cannot take a feature from a module output of type {type(output).__name__}")


class _Captured:
    """Holder filled by :func:`layer_output`; ``.value`` is the last output seen (or None)."""

    def __init__(self) -> None:
        self.value: torch.Tensor | None = None


@contextmanager
def layer_output(model: nn.Module, layer: str):
    """Capture the output of ``model.get_submodule(layer)`` with a forward hook.

    Yields a holder whose ``.value`` is the layer's output of the latest forward
    (not detached, so gradients flow through it when the forward had them). When
    the module returns a tuple/list (e.g. a block returning ``(feature, aux)``),
    the first tensor is taken. The hook is removed on exit, also on error.
    """
    module = model.get_submodule(layer)
    captured = _Captured()

    def hook(_module, _inputs, output):
        captured.value = _first_tensor(output)

    handle = module.register_forward_hook(hook)
    try:
        yield captured
    finally:
        handle.remove()


def pool_features(features: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C) by global average pooling; (B, C) is returned as is."""
    if features.dim() == 4:
        return features.mean(dim=(2, 3))
    if features.dim() == 2:
        return features
    raise ValueError(f"expected (B,C,H,W) or (B,C) features, got shape {tuple(features.shape)}")


# ------------------------------------------------------------------ feature extraction

def _iter_inputs(images):
    """Yield (3,H,W) or (b,3,H,W) tensors from a tensor, a sequence/dataset or an iterable."""
    if isinstance(images, torch.Tensor):
        batch = images if images.dim() == 4 else images[None]
        yield from batch  # one image at a time; re-batched by the caller
        return
    if isinstance(images, dict):  # e.g. load_samples(): {name: (H,W,3) array}
        items = iter(images.values())
    elif hasattr(images, "__getitem__") and hasattr(images, "__len__"):
        items = (images[i] for i in range(len(images)))
    else:
        items = iter(images)
    for item in items:
        if isinstance(item, dict):
            t = item["input"]
            if "hw" in item and t.dim() == 3:  # datasets may pad; features describe the image itself
                h, w = item["hw"]
                t = t[..., :h, :w]
        else:
            t = item
        if isinstance(t, np.ndarray):  # (H, W, 3) float image as load_samples gives
            t = torch.from_numpy(np.ascontiguousarray(t)).permute(2, 0, 1)
        if t.dim() == 4:
            yield from t
        else:
            yield t


def _count(images) -> int | None:
    if isinstance(images, torch.Tensor):
        return 1 if images.dim() == 3 else images.shape[0]
    try:
        return len(images)
    except TypeError:
        return None


def extract_features(model: nn.Module, layer: str | None, images, batch_size: int = 16,
                     progress: bool = True, device=None) -> torch.Tensor:
    """Global-average-pooled activations of one named layer, one row per image.

    Args:
        model: any network dreamlib can describe (:func:`dreamlib.spec.spec_of`; run through
            :func:`dreamlib.models.restore`, so any image size works).
        layer: dotted module name (``model.get_submodule(layer)``); ``None`` for the
            model's :func:`dreamlib.models.feature_layer` (the paper's layer).
        images: a (N,3,H,W) tensor, an iterable of (3,H,W)/(b,3,H,W) tensors or
            (H,W,3) arrays, or a dataset whose items are dicts with ``"input"``
            (cropped to ``"hw"`` when present). Images of different sizes are fine:
            consecutive images of equal size are batched together.
        batch_size: images per forward.
        progress: tqdm bar (over images).

    Returns:
        float32 CPU tensor (N, C), C = channels of the layer's output. If the
        module returns a tuple/list, its first tensor is used.

    The model is run in eval mode under ``torch.no_grad()`` (its mode is restored
    afterwards) and is not copied; the forward hook is removed even on error.
    """
    from tqdm.auto import tqdm

    from .models import feature_layer, restore
    from .spec import unwrap

    model = unwrap(model)  # hooks on the network inside a DataParallel / compile wrapper
    layer = layer or feature_layer(model)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    rows: list[torch.Tensor] = []
    bar = tqdm(total=_count(images), desc=f"features {layer}", disable=not progress, leave=False, unit="img")
    try:
        with torch.no_grad(), layer_output(model, layer) as captured:
            pending: list[torch.Tensor] = []

            def flush():
                if not pending:
                    return
                x = torch.stack(pending).to(device=device, dtype=torch.float32)
                captured.value = None
                restore(model, x)
                if captured.value is None:
                    raise RuntimeError(f"layer {layer!r} did not run in the forward pass")
                rows.append(pool_features(captured.value).float().cpu())
                bar.update(len(pending))
                pending.clear()

            for img in _iter_inputs(images):
                if pending and (img.shape != pending[0].shape or len(pending) >= batch_size):
                    flush()
                pending.append(img)
            flush()
    finally:
        bar.close()
        model.train(was_training)
    if not rows:
        raise ValueError("no images given")
    return torch.cat(rows)


# ------------------------------------------------------------------ embeddings and scores

def _normalised(features) -> np.ndarray:
    f = features.detach().cpu().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
    f = f.astype(np.float64).reshape(len(f), -1)
    return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)


def tsne_embed(features, seed: int = 0, perplexity: float = 30.0, normalize: bool = True) -> np.ndarray:
    """2-D t-SNE embedding (scikit-learn) of (N, C) features.

    ``perplexity`` is clamped to ``(N - 1) / 3`` (at least 1) so small sets work;
    features are L2-normalised first unless ``normalize=False``. Deterministic for
    a seed (PCA initialisation, ``random_state=seed``).
    """
    from sklearn.manifold import TSNE

    f = _normalised(features) if normalize else np.asarray(features, dtype=np.float64)
    n = len(f)
    if n < 2:
        raise ValueError(f"t-SNE needs at least 2 points, got {n}")
    perp = float(min(perplexity, max(1.0, (n - 1) / 3.0)))
    perp = min(perp, n - 1 - 1e-6)
    tsne = TSNE(n_components=2, perplexity=perp, init="pca", learning_rate="auto", random_state=seed)
    return tsne.fit_transform(f).astype(np.float32)


def cluster_scores(features, labels: Sequence, k: int = 5) -> dict:
    """How well ``labels`` group the features.

    Returns ``{"silhouette", "knn_accuracy", "chance", "k", "n", "n_classes"}``:

    - ``silhouette``: scikit-learn's silhouette score, Euclidean distance on
      L2-normalised features (= cosine geometry, see the module docstring); in
      [-1, 1], > 0.5 is a clear grouping, ~0 none. ``nan`` if there are fewer than
      2 classes or every point is its own class.
    - ``knn_accuracy``: leave-one-out k-nearest-neighbour accuracy of predicting
      each point's label from the others (majority vote; a tie goes to the tied
      label with the nearest member). ``k`` is clamped to ``min(k, smallest class
      size - 1)`` (at least 1) so a perfectly separated set can score 1.0.
    - ``chance``: the accuracy of always predicting the most frequent label.
    """
    from sklearn.metrics import silhouette_score

    f = _normalised(features)
    labels = np.asarray(list(labels))
    n = len(f)
    if len(labels) != n:
        raise ValueError(f"{n} feature rows but {len(labels)} labels")
    if n < 2:
        raise ValueError("need at least 2 points")
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    n_classes = len(classes)
    sil = float(silhouette_score(f, inverse, metric="euclidean")) if 2 <= n_classes <= n - 1 else float("nan")
    kk = int(max(1, min(k, counts.min() - 1, n - 1)))
    d = np.sqrt(np.maximum(((f[:, None, :] - f[None, :, :]) ** 2).sum(-1), 0.0))
    np.fill_diagonal(d, np.inf)
    order = np.argsort(d, axis=1, kind="stable")[:, :kk]
    correct = 0
    for i in range(n):
        neigh = inverse[order[i]]
        votes = np.bincount(neigh, minlength=n_classes)
        best = np.flatnonzero(votes == votes.max())
        pred = best[0] if len(best) == 1 else next(c for c in neigh if c in best)  # nearest among tied
        correct += int(pred == inverse[i])
    return {"silhouette": sil, "knn_accuracy": correct / n, "chance": float(counts.max() / n), "k": kk,
            "n": n, "n_classes": n_classes}


def grouping_report(features, rain_labels: Sequence, content_labels: Sequence, k: int = 5) -> dict:
    """Compare grouping by rain type with grouping by image content (the paper's Fig. 2 claim).

    Returns ``{"rain": cluster_scores(...), "content": cluster_scores(...),
    "rain_wins_silhouette": bool, "rain_wins_knn": bool, "rain_wins": bool}``;
    ``rain_wins`` needs both. The paper's observation predicts rain wins.
    """
    rain = cluster_scores(features, rain_labels, k)
    content = cluster_scores(features, content_labels, k)
    by_sil = bool(rain["silhouette"] > content["silhouette"])
    by_knn = bool(rain["knn_accuracy"] > content["knn_accuracy"])
    return {"rain": rain, "content": content, "rain_wins_silhouette": by_sil, "rain_wins_knn": by_knn,
            "rain_wins": by_sil and by_knn}


# ------------------------------------------------------------------ observation sets

@dataclass
class ObservationSet:
    """Rainy images with two labelings: by rain kind and by content.

    ``images`` (N,3,S,S) float in [0,1]; ``clean`` the matching clean crops;
    ``rain_labels[i]`` the rain kind (or benchmark set); ``content_labels[i]`` an
    id shared by all images cut at the same place of the same picture;
    ``source_labels[i]`` the picture the crop comes from.
    """

    images: torch.Tensor
    clean: torch.Tensor
    rain_labels: list[str]
    content_labels: list[str]
    source_labels: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)


#: Three distinct streak kinds, like the paper's Rain100L / Rain100H / Test2800 trio.
OBSERVATION_KINDS = ("light", "heavy", "photoshop")


def observation_set(kinds: Sequence[str] = OBSERVATION_KINDS, n_contents: int | None = None,
                    crop: int | None = None, seed: int = 0, images: dict | None = None) -> ObservationSet:
    """Synthesize the same contents under every rain kind (like Rain100L/H share contents).

    ``n_contents`` crops of size ``crop`` are cut from the *test-role* sample
    images (cycling through them, positions seeded), and each crop is rained on
    with every kind in ``kinds``: N = n_contents x len(kinds). Defaults: 20
    contents at 128 px, or 6 at 64 px in quick mode. Grouping by kind and by
    content are then directly comparable (every content appears once per kind).
    """
    from .data.rain import synthesize
    from .data.samples import load_samples

    n_contents = settings.quick(20, 6) if n_contents is None else int(n_contents)  # None = default, never 0
    crop = settings.quick(128, 64) if crop is None else int(crop)
    if n_contents < 1 or crop < 1:
        raise ValueError(f"n_contents and crop must be positive, got {n_contents} and {crop}")
    images = images if images is not None else load_samples("test")
    names = sorted(images)
    rng = np.random.default_rng([seed, 8])
    rainy, clean, rain_labels, content_labels, sources = [], [], [], [], []
    crops = []
    for c in range(n_contents):
        name = names[c % len(names)]
        h, w = images[name].shape[:2]
        if h < crop or w < crop:
            raise ValueError(f"image {name} is {h}x{w}, smaller than the {crop}px crop")
        top, left = int(rng.integers(h - crop + 1)), int(rng.integers(w - crop + 1))
        crops.append((name, top, left, images[name][top:top + crop, left:left + crop]))
    for ki, kind in enumerate(kinds):
        for c, (name, top, left, patch) in enumerate(crops):
            rainy.append(synthesize(patch, kind, seed=seed * 7919 + c * 31 + ki))
            clean.append(patch)
            rain_labels.append(kind)
            content_labels.append(f"{name}@{top},{left}")
            sources.append(name)
    to_t = lambda arrs: torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).contiguous()  # noqa: E731
    return ObservationSet(to_t(rainy), to_t(clean), rain_labels, content_labels, sources)


def benchmark_observation_set(sets: Sequence[str] = ("Rain100L", "Rain100H", "Test2800"), root=None,
                              limit: int | None = None) -> ObservationSet:
    """The paper's Fig. 2 trio from the written synthetic benchmark.

    Rain100L and Rain100H share their contents (same crops, light vs heavy rain);
    Test2800 has its own. Content labels come from the crop positions recorded in
    the benchmark's ``contents.json``, so equal contents get equal labels across
    sets. ``limit`` keeps the first images of each set. The benchmark is written
    first if needed (quick-mode size in quick mode).
    """
    import json
    from pathlib import Path

    from .data.benchmark import SETS, write_benchmark
    from .data.datasets import PairedImageFolder

    root = Path(root) if root else write_benchmark(progress=False)
    meta = json.loads((root / "contents.json").read_text())
    rainy, clean, rain_labels, content_labels, sources = [], [], [], [], []
    for s in sets:
        family = SETS[s][0]
        ds = PairedImageFolder(root / family, s, limit=limit)
        crops = meta["sets"][s]["crops"]
        for i in range(len(ds)):
            item = ds[i]
            index = int(item["name"].split("_", 1)[0])  # files are written as f"{i:03d}_{picture}"
            name, top, left = crops[index]
            rainy.append(item["input"])
            clean.append(item["target"])
            rain_labels.append(s)
            content_labels.append(f"{name}@{top},{left}")
            sources.append(name)
    return ObservationSet(torch.stack(rainy), torch.stack(clean), rain_labels, content_labels, sources)


# ------------------------------------------------------------------ Fig. 8

def cross_model_features(dreamed: torch.Tensor, observer: nn.Module, layer: str | None = None,
                         observation: ObservationSet | None = None, dreamed_label: str = "dreamed",
                         batch_size: int = 16, progress: bool = True) -> tuple[torch.Tensor, list[str]]:
    """Fig. 8: describe images dreamed with teacher A in the feature space of model B.

    Returns ``(features, labels)``: the pooled ``layer`` features of ``observer``
    (B) for ``dreamed`` (labelled ``dreamed_label``), preceded, when
    ``observation`` is given, by B's features of the observation images (labelled
    with their rain kinds). Recipe for the figure::

        x = dream(hinet, targets).x
        feats, labels = cross_model_features(x, mprnet, observation=observation_set())
        xy = tsne_embed(feats)          # scatter xy coloured by labels
    """
    parts, labels = [], []
    if observation is not None:
        parts.append(extract_features(observer, layer, observation.images, batch_size, progress))
        labels += list(observation.rain_labels)
    parts.append(extract_features(observer, layer, dreamed, batch_size, progress))
    labels += [dreamed_label] * len(parts[-1])
    return torch.cat(parts), labels
