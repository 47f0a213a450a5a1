"""Caffe's SGD solver (`reproduce.finetuning.solver`) against a line-by-line numpy transcription of the
C++ (helpers.caffe_solver_reference), and the solver.prototxt reader on files written here."""

from __future__ import annotations

import copy
import io
import math

import numpy as np
import pytest
import torch
from helpers.caffe_solver_reference import CaffeSolverReference
from torch import nn

from caffe_models import C3D
from reproduce.errors import ReproduceError
from reproduce.finetuning.solver import (
    CaffeSGD,
    SolverSettings,
    caffe_param_groups,
    learning_rate,
    read_solver,
)

ITERATIONS = 30
# Per policy, the settings that make it move within 30 updates. multistep repeats a value (Caffe takes
# one step per update, so 5, 5 gives steps at 5 and 6) and lists one out of order (20 before 12).
POLICY_SETTINGS = {
    "fixed": {},
    "step": {"stepsize": 7, "gamma": 0.5},
    "exp": {"gamma": 0.95},
    "inv": {"gamma": 0.1, "power": 0.75},
    "multistep": {"stepvalue": (5, 5, 20, 12), "gamma": 0.5},
    "poly": {"max_iter": ITERATIONS, "power": 1.5},
    "sigmoid": {"gamma": 0.3, "stepsize": 15},
}
C3D_POLICIES = ("fixed", "step", "exp", "inv")


def settings_for(policy: str, semantics: str, **extra) -> SolverSettings:
    values = {"base_lr": 0.05, "lr_policy": policy, "momentum": 0.9, "weight_decay": 0.01,
              "max_iter": 1000, "semantics": semantics}
    values.update(POLICY_SETTINGS[policy])
    values.update(extra)
    return SolverSettings(**values)


class TinyNet(nn.Module):
    """Modules named as Caffe layers: conv1a (3-D convolution), fc6, fc8."""

    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv1a = nn.Conv3d(2, 3, 3, padding=1)
        self.fc6 = nn.Linear(3 * 2 * 4 * 4, 5)
        self.fc8 = nn.Linear(5, 4)

    def forward(self, x):
        x = torch.relu(self.conv1a(x))
        return self.fc8(torch.relu(self.fc6(x.flatten(1))))


LR_MULTS = {"conv1a": (1.0, 2.0), "fc6": (0.0, 0.0), "fc8": (10.0, 20.0)}  # fc6 frozen, Caffe's way
DECAY_MULTS = {"conv1a": (1.0, 0.0), "fc6": (1.0, 1.0), "fc8": (0.5, 0.25)}


def reference_for(net, groups, settings) -> CaffeSolverReference:
    params = [g["params"][0].detach().numpy() for g in groups]
    solver = {name: getattr(settings, name) for name in ("base_lr", "lr_policy", "gamma", "power", "stepsize",
                                                          "stepvalue", "max_iter", "momentum", "weight_decay",
                                                          "iter_size", "clip_gradients")}
    return CaffeSolverReference(params, [g["lr_mult"] for g in groups], [g["decay_mult"] for g in groups],
                                solver, settings.semantics)


def assert_same_weights(groups, reference, iteration):
    """Equal to float32 rounding: torch may fuse a multiply-add where Caffe's BLAS rounds twice."""
    for group, want in zip(groups, reference.data, strict=True):
        got = group["params"][0].detach().numpy()
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6 * max(1.0, float(np.abs(want).max())),
                                   err_msg=f"{group['layer']} {group['blob']} after update {iteration}")


def random_grads(groups, rng, scale):
    return [(rng.standard_normal(g["params"][0].shape) * scale).astype(np.float32) for g in groups]


@pytest.mark.parametrize("semantics,policy", [("bvlc", p) for p in POLICY_SETTINGS] +
                         [("c3d", p) for p in C3D_POLICIES])
def test_every_policy_follows_caffe_for_30_updates(semantics, policy):
    net = TinyNet()
    groups = caffe_param_groups(net, LR_MULTS, DECAY_MULTS)
    settings = settings_for(policy, semantics)
    optimizer = CaffeSGD(groups, settings)
    reference = reference_for(net, groups, settings)
    frozen = net.fc6.weight.detach().clone()
    rng = np.random.default_rng(1)
    for iteration in range(ITERATIONS):
        grads = random_grads(groups, rng, 1.0)
        optimizer.zero_grad()
        for group, grad in zip(groups, grads, strict=True):
            group["params"][0].grad = torch.from_numpy(grad.copy())
        rate = optimizer.rate
        optimizer.step()
        (reference.bvlc_update if semantics == "bvlc" else reference.c3d_update)(grads)
        assert rate == reference.rates[-1], f"rate of update {iteration}"
        assert_same_weights(groups, reference, iteration)
    assert optimizer.iteration == ITERATIONS
    assert len(set(reference.rates)) > (1 if policy != "fixed" else 0)  # the policy did move
    assert torch.equal(net.fc6.weight, frozen)  # lr_mult 0 freezes, decay or not


def test_bvlc_iter_size_and_clipping_follow_caffe_with_real_backward_passes():
    net = TinyNet(seed=3)
    groups = caffe_param_groups(net, {"fc6": (0.0, 0.0), "fc8": (10.0, 20.0)}, {"fc8": (0.5, 0.0)})
    settings = settings_for("multistep", "bvlc", iter_size=2, clip_gradients=1.5)
    optimizer = CaffeSGD(groups, settings)
    reference = reference_for(net, groups, settings)
    rng = np.random.default_rng(2)
    targets = torch.from_numpy(rng.integers(0, 4, (ITERATIONS, 2, 3)))
    for iteration in range(ITERATIONS):
        optimizer.zero_grad()
        scale = 0.2 if iteration % 3 else 3.0  # some updates clip, some do not
        for batch in range(settings.iter_size):  # Caffe's ForwardBackward iter_size times, diffs summed
            clips = torch.from_numpy(rng.standard_normal((3, 2, 2, 4, 4)).astype(np.float32))
            loss = nn.functional.cross_entropy(net(clips) * scale, targets[iteration, batch])
            loss.backward()
        # Caffe computes no diff for a blob with lr_mult 0 (fc6 here): zero, also in the clipping norm
        summed = [g["params"][0].grad.numpy() * (g["lr_mult"] != 0) for g in groups]
        optimizer.step()
        reference.bvlc_update(summed)
        assert_same_weights(groups, reference, iteration)
    assert any(reference.clipped) and not all(reference.clipped)


def test_clipping_at_zero_clips_as_caffe_does():
    """Caffe clips whenever clip_gradients >= 0: at 0 the update is decay and momentum only."""
    net = TinyNet()
    groups = caffe_param_groups(net)
    settings = settings_for("fixed", "bvlc", clip_gradients=0.0, weight_decay=0.0)
    optimizer = CaffeSGD(groups, settings)
    before = [p.detach().clone() for p in net.parameters()]
    for p in net.parameters():
        p.grad = torch.ones_like(p)
    optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))


def test_bvlc_leaves_the_applied_diff_in_grad_as_caffe_leaves_it_in_the_blob():
    """BVLC's Regularize adds decay · w into the diff in place; the step does so in .grad (no copy)."""
    net = TinyNet()
    optimizer = CaffeSGD(caffe_param_groups(net), settings_for("fixed", "bvlc", weight_decay=0.01))
    for p in net.parameters():
        p.grad = torch.full_like(p, 0.5)
    expected = [0.5 + np.float32(0.01) * np.float32(g["decay_mult"]) * p.detach().numpy()
                for g in optimizer.param_groups for p in g["params"]]
    optimizer.step()
    got = [p.grad.numpy() for g in optimizer.param_groups for p in g["params"]]
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-6)


def test_c3d_counts_from_one_so_a_step_drop_comes_one_update_earlier():
    rates = {}
    for semantics in ("bvlc", "c3d"):
        optimizer = CaffeSGD(caffe_param_groups(TinyNet()), settings_for("step", semantics, stepsize=5,
                                                                          gamma=0.1, base_lr=1.0))
        rates[semantics] = []
        for _ in range(11):
            rates[semantics].append(optimizer.rate)
            optimizer.step()
    drops = {s: [k for k in range(1, 11) if r[k] < r[k - 1]] for s, r in rates.items()}
    assert drops == {"bvlc": [5, 10], "c3d": [4, 9]}
    assert rates["c3d"][:4] == [1.0] * 4 and rates["c3d"][4] == pytest.approx(0.1)
    # learning_rate itself takes each tool's own counter: C3D's update k reads k + 1
    c3d = settings_for("step", "c3d", stepsize=5)
    assert learning_rate(c3d, 5) == learning_rate(settings_for("step", "bvlc", stepsize=5), 5)


def test_learning_rate_formulas():
    f = lambda x: float(np.float32(x))  # noqa: E731  (Caffe's proto floats and Dtype rate)
    base = f(0.05)
    s = settings_for("inv", "bvlc")
    assert learning_rate(s, 7) == f(base * (1 + f(0.1) * 7) ** -f(0.75))
    s = settings_for("poly", "bvlc")
    assert learning_rate(s, 12) == f(base * (1 - 12 / ITERATIONS) ** 1.5)
    assert learning_rate(s, ITERATIONS) == 0.0
    s = settings_for("sigmoid", "bvlc")
    assert learning_rate(s, 15) == f(base / 2)
    assert learning_rate(s, 20) == f(base / (1 + math.exp(-f(0.3) * 5)))
    s = settings_for("exp", "bvlc")
    assert learning_rate(s, 10) == f(base * f(0.95) ** 10)
    s = settings_for("multistep", "bvlc")  # stepvalue (5, 5, 20, 12): steps at 5, 6, 20, 21
    steps = [round(math.log(learning_rate(s, it) / base, 0.5)) for it in range(25)]
    assert steps == [0] * 5 + [1] + [2] * 14 + [3, 4, 4, 4, 4]
    assert learning_rate(SolverSettings(base_lr=0.001), 0) == f(0.001)
    with pytest.raises(ReproduceError, match="poly' is defined up to max_iter 30"):
        learning_rate(settings_for("poly", "bvlc"), 31)


@pytest.mark.parametrize("changes,pattern", [
    ({"lr_policy": "poly", "max_iter": 10}, "lr_policy 'poly' is BVLC Caffe's.*--solver-semantics bvlc"),
    ({"lr_policy": "multistep", "stepvalue": (3,)}, "'multistep' is BVLC Caffe's.*--solver-semantics bvlc"),
    ({"iter_size": 2}, "iter_size 2: the C3D v1.0 solver has no iter_size; pass --solver-semantics bvlc"),
    ({"clip_gradients": 10.0}, "does not clip; pass --solver-semantics bvlc"),
    ({"lr_policy": "cosine"}, "unknown lr_policy 'cosine'"),
    ({"stepsize": 0}, "needs stepsize > 0"),
    ({"momentum": "0.9"}, "momentum takes a number"),
    ({"max_iter": 1.5}, "max_iter takes an integer"),
    ({"semantics": "caffe2"}, "choose 'c3d' or 'bvlc'"),
])
def test_settings_the_tool_would_refuse_are_one_line_errors(changes, pattern):
    with pytest.raises(ReproduceError, match=pattern) as error:
        SolverSettings(**changes)
    assert "\n" not in str(error.value)


def test_defaults_are_the_c3d_finetuning_example():
    s = SolverSettings()
    assert (s.base_lr, s.lr_policy, s.gamma, s.stepsize, s.max_iter, s.momentum, s.weight_decay, s.snapshot,
            s.semantics) == (1e-4, "step", 0.1, 5000, 20000, 0.9, 5e-4, 5000, "c3d")


def run(net, settings, grads, state=None, iteration_range=range(10)):
    groups = caffe_param_groups(net, LR_MULTS, DECAY_MULTS)
    optimizer = CaffeSGD(groups, settings)
    if state is not None:
        optimizer.load_state_dict(state)
    for iteration in iteration_range:
        for group, grad in zip(groups, grads[iteration], strict=True):
            group["params"][0].grad = torch.from_numpy(grad.copy())
        optimizer.step()
    return optimizer


@pytest.mark.parametrize("semantics", ["bvlc", "c3d"])
def test_state_dict_round_trips_velocities_and_the_counter(semantics):
    settings = settings_for("step", semantics, stepsize=4)
    rng = np.random.default_rng(4)
    grads = [random_grads(caffe_param_groups(TinyNet()), rng, 1.0) for _ in range(10)]
    straight = TinyNet()
    run(straight, settings, grads)

    resumed = TinyNet()
    first = run(resumed, settings, grads, iteration_range=range(6))
    buffer = io.BytesIO()
    torch.save({"model": resumed.state_dict(), "optimizer": first.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    assert saved["optimizer"]["caffe"] == {"iteration": 6, "semantics": semantics}
    again = TinyNet(seed=9)
    again.load_state_dict(saved["model"])
    second = run(again, settings, grads, state=saved["optimizer"], iteration_range=range(6, 10))
    assert second.iteration == 10
    for a, b in zip(straight.parameters(), again.parameters(), strict=True):
        assert torch.equal(a, b)
    velocity = second.state[again.conv1a.weight]["momentum_buffer"]
    assert velocity.dtype == torch.float32 and velocity.shape == again.conv1a.weight.shape

    other = "c3d" if semantics == "bvlc" else "bvlc"
    optimizer = CaffeSGD(caffe_param_groups(TinyNet()), settings_for("step", other, stepsize=4))
    with pytest.raises(ReproduceError, match=f"saved with solver semantics '{semantics}'"):
        optimizer.load_state_dict(copy.deepcopy(saved["optimizer"]))


def test_velocity_stays_float32_for_double_parameters():
    net = TinyNet().double()
    optimizer = CaffeSGD(caffe_param_groups(net), settings_for("fixed", "bvlc"))
    for p in net.parameters():
        p.grad = torch.ones_like(p)
    optimizer.step()
    state = optimizer.state_dict()
    reloaded = CaffeSGD(caffe_param_groups(net), settings_for("fixed", "bvlc"))
    reloaded.load_state_dict(state)
    assert all(s["momentum_buffer"].dtype == torch.float32 for s in reloaded.state.values())


def test_param_groups_follow_caffe_layer_names():
    net = C3D(5, conv_channels=(2,) * 8, fc_dim=6, clip_shape=(4, 16, 16))
    groups = caffe_param_groups(net, lr_mults={"fc8-1": (10, 20)}, decay_mults={"conv1a": (2, 1)})
    table = {(g["layer"], g["blob"]): (g["lr_mult"], g["decay_mult"]) for g in groups}
    assert len(groups) == 22 and all(len(g["params"]) == 1 for g in groups)
    assert table[("conv2a", "weight")] == (1.0, 1.0) and table[("conv2a", "bias")] == (2.0, 0.0)
    assert table[("fc8", "weight")] == (10.0, 1.0) and table[("fc8", "bias")] == (20.0, 0.0)
    assert table[("conv1a", "weight")] == (1.0, 2.0) and table[("conv1a", "bias")] == (2.0, 1.0)
    assert groups[0]["params"][0] is net.conv1a.weight
    with pytest.raises(ReproduceError, match="layer 'fc9', which the network does not have; its layers are "
                                             "conv1a, conv2a"):
        caffe_param_groups(net, lr_mults={"fc9": (1, 2)})
    with pytest.raises(ReproduceError, match=r"lr_mults\['fc8'\] gives 1 values; the layer has 2 blobs"):
        caffe_param_groups(net, lr_mults={"fc8": (1,)})
    plain = caffe_param_groups(TinyNet())
    assert [(g["layer"], g["blob"]) for g in plain][:2] == [("conv1a", "weight"), ("conv1a", "bias")]


# --- the solver.prototxt reader ------------------------------------------------------------------------

C3D_EXAMPLE = """\
# C3D v1.0's fine-tuning solver, as the example states it
train_net: "c3d_ucf101_finetuning_train.prototxt"
test_net: 'c3d_ucf101_finetuning_test.prototxt'   # quotes of either kind
test_iter: 200
test_interval: 1000
base_lr: 0.0001
momentum: 0.9
weight_decay: 0.0005
lr_policy: "step"
gamma: 0.1
stepsize: 5000
display: 20
max_iter: 20000
snapshot: 5000
snapshot_prefix: "c3d_ucf101_" "finetune_whole"  # adjacent strings join, as in protobuf
solver_mode: GPU
"""


def test_reads_the_c3d_example_with_comments_and_quotes(tmp_path):
    path = tmp_path / "solver.prototxt"
    path.write_text(C3D_EXAMPLE)
    settings = read_solver(path)
    assert settings == SolverSettings(display=20, test_interval=1000, test_iter=200)
    assert settings.warnings == (
        "train_net is ignored: the fine-tuning command builds the networks and loads the weights",
        "test_net is ignored: the fine-tuning command builds the networks and loads the weights")


def test_reads_bvlc_fields_repeated_values_and_skips_nets(tmp_path):
    path = tmp_path / "solver.prototxt"
    path.write_text("""net_param {   # an inline net, skipped whole
  name: "x" layer { name: "}{" type: "Data" }
}
base_lr: 1e-3 lr_policy: "multistep"; gamma: 0.5
stepvalue: 100
stepvalue: [200, 300]
max_iter: 400, iter_size: 2
clip_gradients: 40
type: "SGD"
regularization_type: "L2"
snapshot_format: HDF5
average_loss: 20
random_seed: 7
""")
    settings = read_solver(path, semantics="bvlc")
    assert (settings.base_lr, settings.lr_policy, settings.gamma, settings.stepvalue, settings.max_iter,
            settings.iter_size, settings.clip_gradients, settings.random_seed) == (
        1e-3, "multistep", 0.5, (100, 200, 300), 400, 2, 40.0, 7)
    # caffe.proto's defaults for what the file leaves out, not the C3D example's
    assert (settings.momentum, settings.weight_decay, settings.snapshot) == (0.0, 0.0, 0)
    assert settings.snapshot_prefix == str(tmp_path / "solver")  # BVLC's UpgradeSnapshotPrefixProperty
    assert any(w.startswith("net_param is ignored") for w in settings.warnings)
    assert any(w.startswith("snapshot_format HDF5 is ignored") for w in settings.warnings)
    with pytest.raises(ReproduceError, match=r"solver\.prototxt: lr_policy 'multistep' is BVLC Caffe's.*"
                                             "--solver-semantics bvlc"):
        read_solver(path)  # C3D v1.0 semantics


@pytest.mark.parametrize("text,pattern", [
    ('base_lr: 0.01\nlr_policy: "fixed"\nmax_iter: 10\nlearning_rate: 0.1\n',
     r"s\.prototxt, line 4: unknown solver field 'learning_rate'"),
    ('base_lr: 0.01\nlr_policy: "fixed"\nmax_iter: 10\nstepsiz: 3\n',
     r"line 4: unknown solver field 'stepsiz' \(did you mean 'stepsize'\?\)"),
    ('base_lr: 0.01\nlr_policy: "step"\nstepsize: 0.5\nmax_iter: 10\n',
     r"line 3: stepsize takes an integer, got 0.5"),
    ('base_lr: "fast"\n', r"line 1: base_lr takes a number, got \"fast\""),
    ("lr_policy: step\n", r"line 1: lr_policy takes a quoted string, got step"),
    ("solver_mode: TPU\n", r"line 1: solver_mode takes one of CPU, GPU, got TPU"),
    ("base_lr: 0.1\n# again\nbase_lr: 0.2\n", r"line 3: base_lr is given twice"),
    ("net_param { name: 'x'\n", r"net_param: its \{ is never closed"),
    ('base_lr: 0.1\nmax_iter: 3\n', r"s\.prototxt: no lr_policy"),
    ('type: "Adam"\n', r"line 1: type 'Adam': only 'SGD' is implemented"),
    ('base_lr: 0.1\nlr_policy: "fixed"\nmax_iter: 3\ntest_iter: 5\ntest_iter: 6\n',
     r"line 5: test_iter is given for several test nets"),
])
def test_bad_files_are_one_line_errors_naming_the_file_and_line(tmp_path, text, pattern):
    path = tmp_path / "s.prototxt"
    path.write_text(text)
    with pytest.raises(ReproduceError, match=pattern) as error:
        read_solver(path)
    assert str(error.value).startswith(str(path)) and "\n" not in str(error.value)


def test_missing_file_is_one_line(tmp_path):
    with pytest.raises(ReproduceError, match=r"absent\.prototxt: cannot be read"):
        read_solver(tmp_path / "absent.prototxt")
