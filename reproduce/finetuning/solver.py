"""Caffe's SGD solver: solver.prototxt settings, learning-rate policies and the momentum update.

Two tools, two semantics (docs/formats.md §6):

- ``"bvlc"``, BVLC Caffe (`src/caffe/solvers/sgd_solver.cpp`, `ApplyUpdate`). Per update, with the
  gradients of ``iter_size`` forward/backward passes summed into ``diff``::

      ClipGradients:  if clip_gradients >= 0 and ‖diff‖₂ > clip_gradients (one norm over all blobs):
                      diff *= clip_gradients / ‖diff‖₂
      Normalize:      diff *= 1 / iter_size
      Regularize:     diff += weight_decay · decay_mult · w                       (L2)
      Update:         v = momentum · v + rate · lr_mult · diff ;  w -= v

  and ``rate = learning_rate(settings, iter)`` with ``iter`` the number of completed updates (0, 1, …).
- ``"c3d"``, the C3D v1.0 tools (`C3D-v1.0/src/caffe/solver.cpp`, `SGDSolver::ComputeUpdateValue`): no
  iter_size, no clipping, only the fixed/step/exp/inv policies, and the update in another order::

      v = rate · lr_mult · diff + momentum · v
      v += weight_decay · decay_mult · rate · lr_mult · w ;  w -= v

  Its loop is ``while (iter_++ < max_iter)``: the counter is already incremented when the update reads
  it, so update k (0-based) uses the rate at ``iter = k + 1`` and a step drop comes one update earlier
  than in BVLC Caffe.

Caffe holds the solver's floats as float32 (`optional float` fields) and computes the update in the
net's float; so does `CaffeSGD`: every scalar is rounded to float32, velocities are float32.
`read_solver` reads a solver.prototxt (protobuf text format) into `SolverSettings`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from reproduce.errors import ReproduceError
from reproduce.finetuning.solver_prototxt import parse_solver_prototxt

POLICIES = ("fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid")
C3D_POLICIES = ("fixed", "step", "exp", "inv")  # C3D v1.0's SGDSolver::GetLearningRate
SEMANTICS = ("c3d", "bvlc")
BVLC_HINT = "pass --solver-semantics bvlc to use BVLC Caffe's solver"


@dataclass(frozen=True)
class SolverSettings:
    """A Caffe solver.prototxt. The defaults are C3D v1.0's fine-tuning example
    (`C3D-v1.0/examples/c3d_finetuning/`) where it states them, Caffe's own defaults elsewhere."""

    base_lr: float = 1e-4             # C3D example
    lr_policy: str = "step"           # C3D example; one of POLICIES
    gamma: float = 0.1                # C3D example
    power: float = 0.0                # Caffe's default (inv and poly only)
    stepsize: int = 5000              # C3D example (step and sigmoid)
    stepvalue: tuple[int, ...] = ()   # Caffe's default (multistep only)
    max_iter: int = 20000             # C3D example
    momentum: float = 0.9             # C3D example
    weight_decay: float = 5e-4        # C3D example
    iter_size: int = 1                # Caffe's default; BVLC only
    clip_gradients: float = -1.0      # Caffe's default: off (clipping is on when >= 0); BVLC only
    snapshot: int = 5000              # C3D example: a snapshot every 5000 updates (0: none)
    snapshot_prefix: str = "c3d_ucf101_finetune_whole"  # C3D example: <prefix>_iter_<N>
    display: int = 0                  # Caffe's default (0: no display)
    test_interval: int = 0            # Caffe's default (0: no testing)
    test_iter: int = 0                # Caffe's default: test batches per test
    random_seed: int = -1             # Caffe's default (< 0: seeded from the clock)
    semantics: str = "c3d"            # "c3d" (C3D v1.0 tools) or "bvlc" (BVLC Caffe)
    warnings: tuple[str, ...] = field(default=(), compare=False)  # what read_solver accepted but ignores

    def __post_init__(self):
        for item in fields(self):
            value = getattr(self, item.name)
            kind = item.type
            if kind == "float":
                if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
                    raise ReproduceError(f"solver setting {item.name} takes a number, got {value!r}")
                object.__setattr__(self, item.name, float(value))
            elif kind == "int":
                if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                    raise ReproduceError(f"solver setting {item.name} takes an integer, got {value!r}")
                object.__setattr__(self, item.name, int(value))
            elif kind == "str" and not isinstance(value, str):
                raise ReproduceError(f"solver setting {item.name} takes a string, got {value!r}")
        try:
            stepvalue = tuple(int(v) for v in self.stepvalue if not isinstance(v, bool))
        except (TypeError, ValueError):
            stepvalue = None
        if stepvalue is None or len(stepvalue) != len(self.stepvalue):
            raise ReproduceError(f"solver setting stepvalue takes integers, got {self.stepvalue!r}")
        object.__setattr__(self, "stepvalue", stepvalue)
        object.__setattr__(self, "warnings", tuple(self.warnings))
        check_settings(self)


def check_settings(s: SolverSettings) -> None:
    """ReproduceError (one line) for settings the chosen tool would refuse or misuse."""
    if s.semantics not in SEMANTICS:
        raise ReproduceError(f"solver semantics {s.semantics!r}: choose 'c3d' or 'bvlc'")
    if s.lr_policy not in POLICIES:
        raise ReproduceError(f"unknown lr_policy {s.lr_policy!r}; Caffe's are {', '.join(POLICIES)}")
    if s.semantics == "c3d":
        if s.lr_policy not in C3D_POLICIES:
            raise ReproduceError(f"lr_policy {s.lr_policy!r} is BVLC Caffe's: the C3D v1.0 solver has only "
                                 f"{', '.join(C3D_POLICIES)}; {BVLC_HINT}")
        if s.iter_size != 1:
            raise ReproduceError(f"iter_size {s.iter_size}: the C3D v1.0 solver has no iter_size; "
                                 f"{BVLC_HINT}")
        if s.clip_gradients >= 0:
            raise ReproduceError(f"clip_gradients {s.clip_gradients:g}: the C3D v1.0 solver does not clip; "
                                 f"{BVLC_HINT}")
        if s.stepvalue:
            raise ReproduceError(f"stepvalue: the C3D v1.0 solver has no multistep policy; {BVLC_HINT}")
    for name in ("base_lr", "gamma", "power", "momentum", "weight_decay", "clip_gradients"):
        if not math.isfinite(getattr(s, name)):
            raise ReproduceError(f"solver setting {name} must be finite, got {getattr(s, name)}")
    for name in ("max_iter", "snapshot", "display", "test_interval", "test_iter"):
        if getattr(s, name) < 0:
            raise ReproduceError(f"solver setting {name} must be >= 0, got {getattr(s, name)}")
    if s.iter_size < 1:
        raise ReproduceError(f"iter_size must be >= 1, got {s.iter_size}")
    if s.lr_policy in ("step", "sigmoid") and s.stepsize <= 0:
        raise ReproduceError(f"lr_policy {s.lr_policy!r} needs stepsize > 0, got {s.stepsize}")
    if s.lr_policy in ("step", "exp", "sigmoid", "multistep") and s.gamma < 0:
        raise ReproduceError(f"lr_policy {s.lr_policy!r} needs gamma >= 0, got {s.gamma:g}")
    if s.lr_policy == "poly" and s.max_iter <= 0:
        raise ReproduceError(f"lr_policy 'poly' needs max_iter > 0, got {s.max_iter}")


_NET_FIELDS = ("net", "net_param", "train_net", "train_net_param", "test_net", "test_net_param",
               "train_state", "test_state", "weights")
_ONLY = {"type": "SGD", "solver_type": "SGD", "regularization_type": "L2"}  # what CaffeSGD implements
# What Caffe gives a field the file leaves out (caffe.proto's defaults), where SolverSettings differs.
_PROTO_DEFAULTS = {"gamma": 0.0, "power": 0.0, "stepsize": 0, "momentum": 0.0, "weight_decay": 0.0,
                   "snapshot": 0, "snapshot_prefix": ""}
_REQUIRED = {"lr_policy": "Caffe stops on an empty policy", "base_lr": "Caffe would use a rate of 0",
             "max_iter": "Caffe would run no update"}


def read_solver(path, *, semantics: str = "c3d") -> SolverSettings:
    """The SolverSettings of a Caffe solver.prototxt, for the tool ``semantics`` ("c3d" or "bvlc").

    Fields the file leaves out take caffe.proto's defaults (momentum 0, weight_decay 0, ...), not the C3D
    example's; ``lr_policy``, ``base_lr`` and ``max_iter`` are required. Fields that name nets or weights
    (net, train_net, test_net, net_param, ..., weights) are ignored and listed in ``.warnings``; so are
    snapshot_format HDF5 and snapshot_diff. type/solver_type other than SGD and regularization_type other
    than L2 are refused. BVLC's `UpgradeSnapshotPrefixProperty` is applied for "bvlc" (no prefix: the
    solver file's path without its extension; a folder: the file's stem in it). Errors are one
    ReproduceError line naming the file and the line.
    """
    source = os.fspath(path)
    try:
        text = Path(source).read_text(encoding="utf-8")
    except OSError as error:
        raise ReproduceError(f"{source}: cannot be read ({error.strerror or error})") from None
    except UnicodeDecodeError:
        raise ReproduceError(f"{source}: not a text solver.prototxt (it is not UTF-8)") from None
    found = parse_solver_prototxt(text, source)
    notes = [f"{name} is ignored: the fine-tuning command builds the networks and loads the weights"
             for name in _NET_FIELDS if name in found]
    for name, wanted in _ONLY.items():
        for given, line in found.get(name, ()):
            if given != wanted:
                raise ReproduceError(f"{source}, line {line}: {name} {given!r}: only {wanted!r} is "
                                     "implemented")
    if any(value == "HDF5" for value, _ in found.get("snapshot_format", ())):
        notes.append("snapshot_format HDF5 is ignored: snapshots are written as binary .caffemodel files")
    if any(value for value, _ in found.get("snapshot_diff", ())):
        notes.append("snapshot_diff is ignored: snapshots hold the weights only")
    for name, why in _REQUIRED.items():
        if name not in found:
            raise ReproduceError(f"{source}: no {name} ({why})")
    if len(found.get("test_iter", ())) > 1:
        raise ReproduceError(f"{source}, line {found['test_iter'][1][1]}: test_iter is given for several "
                             "test nets; fine-tuning tests one")
    settings = dict(_PROTO_DEFAULTS)
    for item in fields(SolverSettings):
        if item.name in found:
            values = [value for value, _ in found[item.name]]
            settings[item.name] = tuple(values) if item.name == "stepvalue" else values[-1]
    if semantics == "bvlc":
        prefix = settings["snapshot_prefix"]
        if not prefix:
            settings["snapshot_prefix"] = os.path.splitext(source)[0]
        elif os.path.isdir(prefix):
            settings["snapshot_prefix"] = os.path.join(prefix, Path(source).stem)
    try:
        return SolverSettings(**settings, semantics=semantics, warnings=tuple(notes))
    except ReproduceError as error:
        raise ReproduceError(f"{source}: {error}") from None


def _f32(value) -> float:
    return float(np.float32(value))


def _multistep_count(stepvalue: tuple[int, ...], iteration: int) -> int:
    """How many steps BVLC's multistep has taken by ``iteration``.

    `GetLearningRate` runs once per update and advances ``current_step_`` by at most one, when
    ``iter >= stepvalue[current_step_]``: step j happens at t_j = max(stepvalue[j], t_(j-1) + 1).
    """
    count, earliest = 0, 0
    for value in stepvalue:
        earliest = max(earliest, value)
        if earliest > iteration:
            break
        count += 1
        earliest += 1
    return count


def learning_rate(settings: SolverSettings, iteration: int) -> float:
    """The rate Caffe's ``SGDSolver::GetLearningRate`` returns at the solver counter ``iteration``.

    ``iteration`` is the tool's own counter as the update sees it: for ``"bvlc"`` the completed updates
    (0 for the first update); for ``"c3d"`` the one-based counter of C3D v1.0's
    ``while (iter_++ < max_iter)`` (1 for the first update). `CaffeSGD.solver_iter` gives it. Policies::

        fixed      base_lr
        step       base_lr · γ^⌊iter / stepsize⌋
        exp        base_lr · γ^iter
        inv        base_lr · (1 + γ · iter)^(−power)
        multistep  base_lr · γ^(steps taken, see _multistep_count)          (BVLC only)
        poly       base_lr · (1 − iter / max_iter)^power                      (BVLC only)
        sigmoid    base_lr / (1 + exp(−γ · (iter − stepsize)))                (BVLC only)

    The proto's floats are float32 and the rate is the net's float: the result is a float32 value.
    """
    check_settings(settings)
    if isinstance(iteration, bool) or not isinstance(iteration, (int, np.integer)) or iteration < 0:
        raise ReproduceError(f"the solver iteration must be an integer >= 0, got {iteration!r}")
    s, it = settings, int(iteration)
    base, gamma, power = _f32(s.base_lr), _f32(s.gamma), _f32(s.power)
    try:
        if s.lr_policy == "fixed":
            rate = base
        elif s.lr_policy == "step":
            rate = base * gamma ** (it // s.stepsize)
        elif s.lr_policy == "exp":
            rate = base * gamma ** it
        elif s.lr_policy == "inv":
            rate = base * (1.0 + gamma * it) ** -power
        elif s.lr_policy == "multistep":
            rate = base * gamma ** _multistep_count(s.stepvalue, it)
        elif s.lr_policy == "poly":
            if it > s.max_iter:
                raise ReproduceError(f"lr_policy 'poly' is defined up to max_iter {s.max_iter}, not at "
                                     f"iteration {it}")
            rate = base * (1.0 - it / s.max_iter) ** power
        else:  # sigmoid
            exponent = -gamma * (it - s.stepsize)
            rate = 0.0 if exponent > 700 else base / (1.0 + math.exp(exponent))
    except OverflowError:
        rate = math.inf
    return _f32(rate)


class CaffeSGD(torch.optim.Optimizer):
    """Caffe's SGD with momentum, for the parameter groups of `caffe_param_groups`.

    Each group carries ``lr_mult`` and ``decay_mult`` (Caffe's `ParamSpec`; V1's ``blobs_lr`` and
    ``weight_decay``). The rate comes from ``settings`` at `solver_iter`; `iteration` counts completed
    updates (it names snapshots: ``<prefix>_iter_<iteration>``). Velocities are float32, in
    ``state[p]["momentum_buffer"]`` (same shape as p); `state_dict` carries `iteration` too.

    The caller, per update: ``zero_grad()``; ``iter_size`` forward/backward passes whose gradients add up
    in ``.grad`` (each loss as Caffe's, e.g. SOFTMAX_LOSS averaged over its batch); ``step()``. With
    BVLC semantics the step, like Caffe's solver, scales a float32 ``.grad`` and adds the weight decay
    to it in place (no copy of the gradients): after ``step()`` it holds the diff that was applied.
    A parameter without ``.grad`` has a zero diff, as in Caffe: decay still applies unless its
    ``lr_mult`` is 0 (Caffe's way to freeze a blob: it never moves, and its gradient, which Caffe does
    not compute, is left out of the clipping norm; ``requires_grad_(False)`` on it saves the work).
    """

    def __init__(self, params, settings: SolverSettings, *, iteration: int = 0):
        if not isinstance(settings, SolverSettings):
            raise TypeError(f"settings must be a SolverSettings, got {type(settings).__name__}")
        super().__init__(params, {"lr_mult": 1.0, "decay_mult": 1.0})
        self.settings = settings
        self.iteration = int(iteration)

    @property
    def solver_iter(self) -> int:
        """The counter the next update's rate is computed at (C3D v1.0: one ahead, see the module)."""
        return self.iteration + (1 if self.settings.semantics == "c3d" else 0)

    @property
    def rate(self) -> float:
        """The rate of the next update (before lr_mult)."""
        return learning_rate(self.settings, self.solver_iter)

    def _clip_scale(self) -> np.float32 | None:
        """BVLC's `ClipGradients`: the factor that brings the global L2 norm of the summed diffs down to
        clip_gradients, or None when clipping is off or not needed. A blob with lr_mult 0 has no diff in
        Caffe (`Net::Init` turns its backward off), so it does not count here either."""
        clip = self.settings.clip_gradients
        if clip < 0:
            return None
        sumsq = sum(float(torch.linalg.vector_norm(p.grad, dtype=torch.float64)) ** 2
                    for group in self.param_groups if group["lr_mult"] != 0
                    for p in group["params"] if p.grad is not None)
        norm = math.sqrt(sumsq)
        return np.float32(np.float32(clip) / np.float32(norm)) if norm > clip else None

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        s = self.settings
        bvlc = s.semantics == "bvlc"
        rate, momentum = np.float32(self.rate), np.float32(s.momentum)
        weight_decay = np.float32(s.weight_decay)
        scale = self._clip_scale() if bvlc else None
        normalize = np.float32(1.0) / np.float32(s.iter_size) if bvlc and s.iter_size > 1 else None
        for group in self.param_groups:
            local_rate = rate * np.float32(group["lr_mult"])
            local_decay = weight_decay * np.float32(group["decay_mult"])
            for p in group["params"]:
                if p.grad is not None and p.grad.is_sparse:
                    raise ReproduceError("CaffeSGD does not take sparse gradients")
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p, dtype=torch.float32)
                v = state["momentum_buffer"]
                w = p if p.dtype == torch.float32 else p.detach().float()
                diff = torch.zeros_like(w) if p.grad is None else p.grad.detach().float()
                if bvlc:                          # Caffe's Normalize, ClipGradients, Regularize: in the diff
                    if scale is not None:
                        diff.mul_(float(scale))
                    if normalize is not None:
                        diff.mul_(float(normalize))
                    if local_decay:
                        diff.add_(w, alpha=float(local_decay))
                    v.mul_(float(momentum)).add_(diff, alpha=float(local_rate))
                else:
                    v.mul_(float(momentum)).add_(diff, alpha=float(local_rate))
                    if local_decay:
                        v.add_(w, alpha=float(local_decay * local_rate))
                w.sub_(v)
                if w is not p:
                    p.copy_(w)
        self.iteration += 1
        return loss

    def state_dict(self):
        state = super().state_dict()
        state["caffe"] = {"iteration": self.iteration, "semantics": self.settings.semantics}
        return state

    def load_state_dict(self, state_dict) -> None:
        state_dict = dict(state_dict)
        caffe = state_dict.pop("caffe", None)
        if not isinstance(caffe, dict) or "iteration" not in caffe:
            raise ReproduceError("not a CaffeSGD state (no iteration counter in it)")
        if caffe.get("semantics") != self.settings.semantics:
            raise ReproduceError(f"the optimiser state was saved with solver semantics "
                                 f"{caffe.get('semantics')!r}, this run uses {self.settings.semantics!r}")
        super().load_state_dict(state_dict)
        # torch casts state to each parameter's dtype; Caffe's history stays float32.
        saved = [i for group in state_dict["param_groups"] for i in group["params"]]
        current = [p for group in self.param_groups for p in group["params"]]
        for index, p in zip(saved, current, strict=True):
            buffer = state_dict["state"].get(index, {}).get("momentum_buffer")
            if buffer is not None:
                self.state[p]["momentum_buffer"] = buffer.to(device=p.device, dtype=torch.float32,
                                                             copy=True)
        self.iteration = int(caffe["iteration"])


def caffe_layers(model: torch.nn.Module) -> dict[str, list[tuple[str, torch.nn.Parameter]]]:
    """{Caffe layer: [(blob name, parameter)]} in Caffe's blob order (weight, then bias).

    A `caffe_models` network (C3D, VGG19) gives its `caffe_parameters()`; any other model gives each
    module that owns parameters, named by its module path.
    """
    if hasattr(model, "caffe_parameters"):
        return {name: list(zip(("weight", "bias"), blobs, strict=True))
                for name, blobs in model.caffe_parameters().items()}
    return {name: list(module.named_parameters(recurse=False)) for name, module in model.named_modules()
            if next(module.parameters(recurse=False), None) is not None}


def caffe_param_groups(model: torch.nn.Module, lr_mults=None, decay_mults=None) -> list[dict]:
    """One CaffeSGD parameter group per Caffe blob: {"params": [p], "layer", "blob", "lr_mult",
    "decay_mult"}.

    ``lr_mults`` / ``decay_mults``: {layer: (weight mult, bias mult)}; layers not named take Caffe's
    fine-tuning convention, weights lr_mult 1 / decay_mult 1 and biases 2 / 0 (C3D's ``blobs_lr: 1, 2``,
    ``weight_decay: 1, 0``). A release alias (C3D's ``fc8-1``) names its layer. Unknown layer names are
    an error, so a typo cannot leave a layer at the default.
    """
    layers = caffe_layers(model)
    aliases = getattr(model, "caffe_aliases", {})
    chosen: dict[str, dict[str, tuple]] = {"lr_mult": {}, "decay_mult": {}}
    for key, given in (("lr_mult", lr_mults), ("decay_mult", decay_mults)):
        for name, mults in (given or {}).items():
            layer = aliases.get(name, name)
            if layer not in layers:
                raise ReproduceError(f"{key}s name layer {name!r}, which the network does not have; its "
                                     f"layers are {', '.join(layers)}")
            mults = tuple(mults)
            if len(mults) != len(layers[layer]):
                raise ReproduceError(f"{key}s[{name!r}] gives {len(mults)} values; the layer has "
                                     f"{len(layers[layer])} blobs ({', '.join(b for b, _ in layers[layer])})")
            chosen[key][layer] = tuple(float(m) for m in mults)
    defaults = {"lr_mult": (1.0, 2.0), "decay_mult": (1.0, 0.0)}
    groups = []
    for layer, blobs in layers.items():
        for index, (blob, param) in enumerate(blobs):
            group = {"params": [param], "layer": layer, "blob": blob}
            for key in ("lr_mult", "decay_mult"):
                mults = chosen[key].get(layer)
                group[key] = mults[index] if mults else (defaults[key][1] if blob == "bias" else
                                                         defaults[key][0])
            groups.append(group)
    return groups


__all__ = ["SolverSettings", "read_solver", "learning_rate", "CaffeSGD", "caffe_param_groups", "caffe_layers",
           "check_settings", "POLICIES", "C3D_POLICIES", "SEMANTICS"]
