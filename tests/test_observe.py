"""Tests of dreamlib.observe: feature extraction by hook, t-SNE, cluster scores, observation sets."""
import numpy as np
import pytest
import torch
from torch import nn

from dreamlib import models
from dreamlib.observe import (ObservationSet, cluster_scores, cross_model_features, extract_features,
                              grouping_report, layer_output, observation_set, tsne_embed)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return models.build("hinet", "small", wf=4, depth=2)


def _manual(model, layer, x):
    out = {}
    h = model.get_submodule(layer).register_forward_hook(lambda m, i, o: out.setdefault("v", o))
    try:
        with torch.no_grad():
            models.restore(model.eval(), x)
    finally:
        h.remove()
    return out["v"].mean(dim=(2, 3))


# ------------------------------------------------------------------ extract_features

def test_features_shape_and_value_match_a_manual_pooled_forward(tiny):
    x = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    f = extract_features(tiny, None, x, batch_size=2, progress=False)
    assert f.shape == (5, tiny.cat12.out_channels) == (5, 4)
    assert torch.allclose(f, _manual(tiny, "cat12", x), atol=1e-5)
    other = extract_features(tiny, "conv_01", x, progress=False)
    assert other.shape == (5, tiny.conv_01.out_channels)
    assert torch.allclose(other, _manual(tiny, "conv_01", x), atol=1e-5)


def test_features_accept_lists_datasets_and_mixed_sizes(tiny):
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(3, 3, 32, 32, generator=g), torch.rand(2, 3, 40, 24, generator=g)
    ref = torch.cat([_manual(tiny, "cat12", a), _manual(tiny, "cat12", b)])
    as_list = extract_features(tiny, None, list(a) + list(b), batch_size=16, progress=False)
    dataset = [{"input": t, "target": t} for t in list(a) + list(b)]
    as_dataset = extract_features(tiny, None, dataset, progress=False)
    assert torch.allclose(as_list, ref, atol=1e-5) and torch.allclose(as_dataset, ref, atol=1e-5)
    padded = [{"input": torch.nn.functional.pad(t, (0, 8, 0, 8)), "hw": (32, 32)} for t in a]
    assert torch.allclose(extract_features(tiny, None, padded, progress=False), ref[:3], atol=1e-5)


def test_hook_removed_and_mode_restored_even_on_error(tiny):
    module = tiny.get_submodule("cat12")
    tiny.train()
    extract_features(tiny, None, torch.rand(2, 3, 32, 32), progress=False)
    assert len(module._forward_hooks) == 0 and tiny.training
    with pytest.raises(ValueError):
        extract_features(tiny, None, torch.rand(2, 4, 32, 32), progress=False)  # 4 channels: restore refuses
    assert len(module._forward_hooks) == 0 and tiny.training
    assert all(p.grad is None for p in tiny.parameters())


def test_layer_output_takes_first_tensor_of_a_tuple():
    class Pair(nn.Module):
        def forward(self, x):
            return x * 2, x * 3

    net = nn.Sequential(Pair())
    x = torch.ones(2, 3, 4, 4)
    with layer_output(net, "0") as cap:
        net(x)
    assert torch.equal(cap.value, 2 * x)
    assert len(net[0]._forward_hooks) == 0


# ------------------------------------------------------------------ scores and embeddings

def _clusters(n_per=20, n_classes=3, dim=8, spread=0.05, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.eye(dim)[:n_classes] * 3
    x = np.concatenate([c + spread * rng.standard_normal((n_per, dim)) for c in centres])
    return x, np.repeat(np.arange(n_classes), n_per)


def test_cluster_scores_on_separable_clusters():
    x, y = _clusters()
    s = cluster_scores(x, y)
    assert s["silhouette"] > 0.5 and s["knn_accuracy"] == 1.0
    assert s["k"] == 5 and s["n_classes"] == 3 and s["chance"] == pytest.approx(1 / 3)
    assert cluster_scores(torch.from_numpy(x), [str(v) for v in y])["knn_accuracy"] == 1.0


def test_cluster_scores_on_shuffled_labels_are_near_chance():
    x, y = _clusters()
    accs, sils = [], []
    for seed in range(5):
        s = cluster_scores(x, np.random.default_rng(seed).permutation(y))
        accs.append(s["knn_accuracy"])
        sils.append(s["silhouette"])
    assert abs(np.mean(accs) - 1 / 3) < 0.15
    assert np.mean(sils) < 0.05


def test_knn_k_is_clamped_for_small_classes():
    x, y = _clusters(n_per=3)
    s = cluster_scores(x, y, k=10)
    assert s["k"] == 2 and s["knn_accuracy"] == 1.0


def test_grouping_report_prefers_the_grouping_that_explains_the_features():
    rng = np.random.default_rng(0)
    rain = np.repeat(np.arange(3), 6)  # 3 rain kinds x 6 contents, every content once per kind
    content = np.tile(np.arange(6), 3)
    rain_dirs, content_dirs = rng.standard_normal((3, 16)), rng.standard_normal((6, 16))
    feats = 3 * rain_dirs[rain] + 0.5 * content_dirs[content] + 0.05 * rng.standard_normal((18, 16))
    r = grouping_report(feats, rain, content)
    assert r["rain_wins"] and r["rain"]["silhouette"] > r["content"]["silhouette"]
    flipped = grouping_report(0.5 * rain_dirs[rain] + 3 * content_dirs[content], rain, content)
    assert not flipped["rain_wins_silhouette"] and not flipped["rain_wins_knn"]


def test_tsne_small_sets_and_determinism():
    x, _ = _clusters(n_per=2)  # 6 points: perplexity must be clamped
    a = tsne_embed(x, seed=0)
    assert a.shape == (6, 2) and np.isfinite(a).all()
    assert np.allclose(a, tsne_embed(x, seed=0))


# ------------------------------------------------------------------ observation sets

def test_observation_set_shares_contents_across_rain_kinds():
    obs = observation_set(kinds=("light", "heavy"), n_contents=3, crop=32, seed=0)
    assert isinstance(obs, ObservationSet) and len(obs) == 6
    assert obs.images.shape == obs.clean.shape == (6, 3, 32, 32)
    assert obs.rain_labels == ["light"] * 3 + ["heavy"] * 3
    assert obs.content_labels[:3] == obs.content_labels[3:] and len(set(obs.content_labels)) == 3
    assert torch.equal(obs.clean[:3], obs.clean[3:])
    assert not torch.allclose(obs.images[:3], obs.images[3:])
    assert not torch.equal(obs.images, obs.clean)
    again = observation_set(kinds=("light", "heavy"), n_contents=3, crop=32, seed=0)
    assert torch.equal(obs.images, again.images)


def test_cross_model_features_labels_observation_then_dreamed(tiny):
    obs = observation_set(kinds=("light", "heavy"), n_contents=2, crop=32)
    dreamed = torch.rand(3, 3, 32, 32)
    feats, labels = cross_model_features(dreamed, tiny, observation=obs, progress=False)
    assert feats.shape == (7, 4)
    assert labels == obs.rain_labels + ["dreamed"] * 3


def test_benchmark_observation_set_pairs_rain100l_and_rain100h_contents(tmp_path):
    from dreamlib.data.benchmark import write_benchmark
    from dreamlib.observe import benchmark_observation_set

    root = write_benchmark(tmp_path / "bench", quick=True, progress=False)
    obs = benchmark_observation_set(root=root)
    n = len(obs) // 3
    assert obs.rain_labels == ["Rain100L"] * n + ["Rain100H"] * n + ["Test2800"] * n
    light, heavy, other = (obs.content_labels[i * n:(i + 1) * n] for i in range(3))
    assert light == heavy and not set(other) & set(light)
    assert torch.equal(obs.clean[:n], obs.clean[n:2 * n])
