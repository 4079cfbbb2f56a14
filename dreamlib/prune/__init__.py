"""Unstructured pruning of deraining networks: the paper's baselines and its adaptive scheme.

>>> from dreamlib import prune as P
>>> target = P.paper_target_macs(teacher)                     # the paper's FLOPs ratio
>>> student, report = P.prune(teacher, "lamp", target_macs=target)
>>> student, report = P.prune(teacher, "adaptive", X=dreamed, target_macs=target)
>>> print(report.summary())
>>> P.allocate(teacher, "erk", 0.5)                           # {layer: sparsity}
>>> df = P.sensitivity_map(teacher, x, sparsities=[0.1, 0.5, 0.9]); P.plot_sensitivity(df)
>>> P.save_pruned(student, "student.pt"); P.load_pruned("student.pt")

What is pruned: the weights of every Conv2d, ConvTranspose2d and Linear (each shared
tensor once; first and last layers included); biases and norms never. Masks are
PyTorch's (``torch.nn.utils.prune``: ``weight_orig`` + ``weight_mask``), so
:func:`dreamlib.flops.count_macs` sees them and fine-tuning keeps pruned weights
at zero; :func:`finalize` makes the zeros permanent.

Methods (:data:`METHODS`):

- ``l1-uniform``: magnitude pruning at the same ratio in every layer (Han et al.);
- ``l1-global``: one global |w| threshold (``torch.nn.utils.prune.global_unstructured``);
- ``erk``: Erdos-Renyi-Kernel densities (RigL), magnitude pruning inside each layer;
- ``lamp``: LAMP scores, global top-k (Lee et al.);
- ``adaptive``: the paper's Algorithm 1 (per-module bisection on PSNR(S(X), T(X)) >= tp;
  ``order="independent"`` each module alone, the default, or ``"cumulative"``);
- ``dream-budget``: beyond the paper, one sparsity per module chosen to minimise the summed
  output error on dreams under the MACs target (:mod:`.budget`).

Equal FLOPs: ``prune(..., target_macs=...)`` bisects each method's global knob until
the MACs (``macs_convention="nni"`` by default, the paper's) are within 0.1 % of the
target; :func:`compare_methods` does it for every method and evaluates.

Modules: :mod:`.masks` (mask mechanism), :mod:`.l1`, :mod:`.erk`, :mod:`.lamp`
(allocations), :mod:`.search` (MACs model, bisection), :mod:`.api` (allocate, prune),
:mod:`.probe` + :mod:`.adaptive` (Algorithm 1), :mod:`.sensitivity` (Fig. 4),
:mod:`.io` (save/load), :mod:`.compare` (paper targets, comparison table),
:mod:`.report` (:class:`PruneReport`).
"""
from .adaptive import DEFAULT_EPS, DEFAULT_ORDER, DEFAULT_TP, ORDERS, Sweep, prune_adaptive, sweep
from .api import BASELINES, DREAM_METHODS, METHODS, allocate, apply_counts, make_allocator, prune
from .budget import prune_budget
from .compare import (PAPER_FLOPS, Comparison, compare_methods, module_sparsity_table, paper_ratio, paper_target_macs,
                      plot_layer_sparsity, plot_module_sparsity)
from .erk import erk_densities
from .io import finalized_state_dict, load_pruned, save_pruned, storage_size
from .lamp import lamp_scores
from .masks import PRUNABLE_TYPES, copy_model, finalize, global_sparsity, layer_sparsity, masks, prunable_layers
from .probe import Probe
from .report import PruneReport
from .search import MacsModel, bisect_target
from .sensitivity import plot_sensitivity, sensitivity_map

__all__ = [
    "METHODS", "BASELINES", "allocate", "prune", "apply_counts", "make_allocator", "PruneReport",
    "prune_adaptive", "sweep", "Sweep", "DEFAULT_TP", "DEFAULT_EPS", "DEFAULT_ORDER", "ORDERS", "Probe",
    "prune_budget", "DREAM_METHODS",
    "sensitivity_map", "plot_sensitivity",
    "finalize", "copy_model", "masks", "layer_sparsity", "global_sparsity", "prunable_layers",
    "PRUNABLE_TYPES", "save_pruned", "load_pruned", "storage_size", "finalized_state_dict",
    "PAPER_FLOPS", "paper_ratio", "paper_target_macs", "compare_methods", "Comparison", "plot_layer_sparsity",
    "module_sparsity_table", "plot_module_sparsity",
    "erk_densities", "lamp_scores", "MacsModel", "bisect_target",
]
