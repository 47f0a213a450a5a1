"""The fine-tuning training pass (reproduce.finetuning.run.TrainingNet): Caffe's DROPOUT scaling, and the
channels_last layouts that run_job puts C3D (channels_last_3d) and VGG-19 (channels_last) in giving the
values of contiguous tensors. Small networks (helpers.networks)."""

import copy

import pytest
import torch
from helpers.networks import small_c3d, small_vgg

from reproduce.finetuning.run import TrainingNet, fast_layout, to_fast_layout

pytestmark = pytest.mark.usefixtures("one_thread")


def pass_outputs(model, x):
    """fc8 scores and every parameter's gradient of one training pass (fixed dropout masks)."""
    model.zero_grad(set_to_none=True)
    scores = model(x, torch.Generator().manual_seed(3))
    torch.nn.functional.cross_entropy(scores, torch.tensor([0, 1])).backward()
    return scores.detach(), {n: p.grad.clone() for n, p in model.net.named_parameters()}


@pytest.mark.parametrize("build, shape, fmt", [
    (small_c3d, (2, 3, 16, 112, 112), torch.channels_last_3d),
    (small_vgg, (2, 3, 32, 32), torch.channels_last),
])
def test_the_fast_layout_gives_the_values_of_contiguous_tensors(build, shape, fmt):
    net = build()
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0)) * 50
    plain = TrainingNet(copy.deepcopy(net), channels_last=False).train()
    fast = TrainingNet(to_fast_layout(copy.deepcopy(net))).train()
    first = next(m for m in fast.net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d)))
    assert fast_layout(len(shape)) == fmt
    assert first.weight.is_contiguous(memory_format=fmt) and not first.weight.is_contiguous()
    scores, grads = pass_outputs(plain, x)
    fast_scores, fast_grads = pass_outputs(fast, x)
    torch.testing.assert_close(fast_scores, scores, rtol=1e-5, atol=1e-5 * float(scores.abs().max()))
    for name, grad in grads.items():
        torch.testing.assert_close(fast_grads[name], grad, rtol=1e-4,
                                   atol=1e-5 * float(grad.abs().max()), msg=name)


def test_dropout_keeps_half_of_fc6_and_fc7_and_scales_the_rest_by_two():
    """Caffe's DROPOUT in training (x · mask / (1 − 0.5)), nothing in eval: fc7's input as the pass
    sees it."""
    net = small_vgg()
    model = TrainingNet(net).train()
    seen = []
    net.fc7.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach()))
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 50
    model(x, torch.Generator().manual_seed(5))
    model.eval()
    model(x)
    dropped, full = seen
    kept = dropped != 0
    torch.testing.assert_close(dropped[kept], 2 * full[kept])
    assert 0 < kept.sum() < (full != 0).sum()
