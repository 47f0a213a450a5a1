"""Caffe's SGD solver transcribed line by line into numpy float32, to check `reproduce.finetuning.solver`.

Written from the C++ of the two tools, not from the module under test:

- BVLC Caffe, `src/caffe/solvers/sgd_solver.cpp`: `GetLearningRate` (with its stateful multistep
  counter `current_step_`), `ApplyUpdate` = `ClipGradients`, then per blob `Normalize`, `Regularize`
  (L2) and `ComputeUpdateValue`, then `Net::Update` (data -= diff), then `++iter_` (`Solver::Step`).
- C3D v1.0, `C3D-v1.0/src/caffe/solver.cpp`: `while (iter_++ < max_iter) { ForwardBackward;
  ComputeUpdateValue; Update; }` with `GetLearningRate` (fixed/step/exp/inv) and
  `history = local_rate·diff + momentum·history; if (local_decay) history += local_decay·local_rate·w`.

Dtype is float: the proto's floats are float32, `rate` is float32, blobs are float32.
"""

from __future__ import annotations

import math

import numpy as np

f32 = np.float32


class CaffeSolverReference:
    """``params``: float32 arrays (copied); ``lr_mults`` / ``decay_mults``: one per blob (Caffe's
    `params_lr` / `params_weight_decay`); ``solver``: the SolverParameter's values as a dict."""

    def __init__(self, params, lr_mults, decay_mults, solver: dict, semantics: str):
        self.data = [np.array(p, dtype=np.float32) for p in params]
        self.history = [np.zeros_like(p) for p in self.data]
        self.lr_mults, self.decay_mults = [f32(m) for m in lr_mults], [f32(m) for m in decay_mults]
        self.param = dict(solver)
        self.semantics = semantics
        self.iter_ = 0
        self.current_step_ = 0
        self.clipped = []  # per update: whether ClipGradients scaled the diffs
        self.rates = []  # per update: the rate GetLearningRate returned

    def get_learning_rate(self) -> np.float32:
        p, it = self.param, self.iter_
        base_lr, gamma, power = float(f32(p["base_lr"])), float(f32(p["gamma"])), float(f32(p["power"]))
        policy = p["lr_policy"]
        if policy == "fixed":
            rate = base_lr
        elif policy == "step":
            self.current_step_ = it // p["stepsize"]
            rate = base_lr * math.pow(gamma, self.current_step_)
        elif policy == "exp":
            rate = base_lr * math.pow(gamma, it)
        elif policy == "inv":
            rate = base_lr * math.pow(1.0 + gamma * it, -power)
        elif policy == "multistep":
            stepvalue = p["stepvalue"]
            if self.current_step_ < len(stepvalue) and it >= stepvalue[self.current_step_]:
                self.current_step_ += 1
            rate = base_lr * math.pow(gamma, self.current_step_)
        elif policy == "poly":
            rate = base_lr * math.pow(1.0 - it / p["max_iter"], power)
        elif policy == "sigmoid":
            rate = base_lr * (1.0 / (1.0 + math.exp(-gamma * (it - p["stepsize"]))))
        else:
            raise ValueError(f"Unknown learning rate policy: {policy}")
        return f32(rate)

    # --- BVLC: one Solver::Step iteration after the iter_size ForwardBackward passes summed the diffs.
    def bvlc_update(self, diffs) -> None:
        diffs = [np.array(d, dtype=np.float32) for d in diffs]
        rate = self.get_learning_rate()
        self.rates.append(float(rate))
        self._clip_gradients(diffs)
        for i in range(len(self.data)):
            self._normalize(diffs, i)
            self._regularize(diffs, i)
            self._compute_update_value(diffs, i, rate)
        for i in range(len(self.data)):  # Net::Update
            self.data[i] = (self.data[i] - diffs[i]).astype(np.float32)
        self.iter_ += 1

    def _clip_gradients(self, diffs) -> None:
        clip_gradients = f32(self.param.get("clip_gradients", -1))
        if clip_gradients < 0:
            self.clipped.append(False)
            return
        sumsq_diff = sum(float(np.dot(d.ravel().astype(np.float64), d.ravel().astype(np.float64)))
                         for d in diffs)
        l2norm_diff = math.sqrt(sumsq_diff)
        self.clipped.append(l2norm_diff > clip_gradients)
        if l2norm_diff > clip_gradients:
            scale_factor = f32(clip_gradients / f32(l2norm_diff))
            for i, d in enumerate(diffs):
                diffs[i] = (d * scale_factor).astype(np.float32)

    def _normalize(self, diffs, i) -> None:
        iter_size = self.param.get("iter_size", 1)
        if iter_size == 1:
            return
        accum_normalization = f32(1.0) / f32(iter_size)
        diffs[i] = (diffs[i] * accum_normalization).astype(np.float32)

    def _regularize(self, diffs, i) -> None:
        local_decay = f32(self.param["weight_decay"]) * self.decay_mults[i]
        if local_decay:  # caffe_axpy(count, local_decay, data, diff)
            diffs[i] = (diffs[i] + local_decay * self.data[i]).astype(np.float32)

    def _compute_update_value(self, diffs, i, rate) -> None:
        local_rate = rate * self.lr_mults[i]
        momentum = f32(self.param["momentum"])
        # caffe_cpu_axpby(count, local_rate, diff, momentum, history): history = momentum·history + ...
        self.history[i] = (momentum * self.history[i]).astype(np.float32)
        self.history[i] = (self.history[i] + local_rate * diffs[i]).astype(np.float32)
        diffs[i] = self.history[i].copy()  # caffe_copy(history → diff)

    # --- C3D v1.0: the body of `while (iter_++ < max_iter)` for one ForwardBackward's diffs.
    def c3d_update(self, diffs) -> None:
        self.iter_ += 1  # the loop condition's post-increment, before ForwardBackward
        diffs = [np.array(d, dtype=np.float32) for d in diffs]
        rate = self.get_learning_rate()
        self.rates.append(float(rate))
        momentum, weight_decay = f32(self.param["momentum"]), f32(self.param["weight_decay"])
        for i in range(len(self.data)):
            local_rate = rate * self.lr_mults[i]
            local_decay = weight_decay * self.decay_mults[i]
            # caffe_cpu_axpby(count, local_rate, diff, momentum, history)
            self.history[i] = (momentum * self.history[i]).astype(np.float32)
            self.history[i] = (self.history[i] + local_rate * diffs[i]).astype(np.float32)
            if local_decay:
                self.history[i] = (self.history[i] + (local_decay * local_rate) * self.data[i]
                                   ).astype(np.float32)
            diffs[i] = self.history[i].copy()
        for i in range(len(self.data)):
            self.data[i] = (self.data[i] - diffs[i]).astype(np.float32)
