"""SOLVER.OPTIMIZER: Detectron2's SGD by default, AdamW on request, both with gradient clipping."""
import pytest
import torch

from zip_d2.config import SetupError, get_cfg
from zip_d2.engine.setup import preflight
from zip_d2.engine.trainer import Trainer


def small_model():
    """Conv-BN-linear. The convolution has no bias, as before every BatchNorm in detectron2:
    BatchNorm subtracts each channel's mean, so a bias there has a true gradient of exactly 0,
    and what the optimizer sees is the rounding noise of the CPU's kernels."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, bias=False), torch.nn.BatchNorm2d(8),
                               torch.nn.Flatten(), torch.nn.LazyLinear(2))


def cfg_with(*opts):
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.BASE_LR", "0.01", "SOLVER.WEIGHT_DECAY", "0.05",
                         "SOLVER.WEIGHT_DECAY_NORM", "0.0", *opts])
    return cfg


def varied_input():
    """A batch whose pixels differ: with a constant image every convolution output is constant
    per channel, BatchNorm maps it to exactly 0 (or to rounding noise, depending on the CPU's
    kernels), and the convolution's and BatchNorm weight's true gradients are 0."""
    return torch.randn(2, 3, 5, 5, generator=torch.Generator().manual_seed(1))


def step_with_large_gradients(optimizer, model):
    """One optimizer step on a loss scaled far past the clip value; the gradient norms seen
    by step() (after clipping, which runs inside it), one per parameter."""
    model(varied_input()).sum().mul(1e4).backward()
    optimizer.step()
    return [p.grad.norm().item() for p in model.parameters()]


def test_default_is_detectron2_sgd():
    model = small_model()
    model(torch.ones(1, 3, 5, 5))  # materialise the lazy layer
    opt = Trainer.build_optimizer(cfg_with(), model)
    assert isinstance(opt, torch.optim.SGD)
    assert not isinstance(opt, torch.optim.AdamW)


def test_adamw_uses_betas_weight_decay_groups_and_clipping():
    model = small_model()
    model(torch.ones(1, 3, 5, 5))
    cfg = cfg_with("SOLVER.OPTIMIZER", "AdamW", "SOLVER.BETAS", "(0.8, 0.99)",
                   "SOLVER.CLIP_GRADIENTS.ENABLED", "True",
                   "SOLVER.CLIP_GRADIENTS.CLIP_TYPE", "norm",
                   "SOLVER.CLIP_GRADIENTS.CLIP_VALUE", "1.0")
    opt = Trainer.build_optimizer(cfg, model)
    assert isinstance(opt, torch.optim.AdamW)
    assert all(g["betas"] == (0.8, 0.99) for g in opt.param_groups)
    norm_params = {id(p) for p in model[1].parameters()}
    for group in opt.param_groups:
        expected = 0.0 if any(id(p) in norm_params for p in group["params"]) else 0.05
        assert group["weight_decay"] == expected
    before = [p.detach().clone() for p in model.parameters()]
    grad_norms = step_with_large_gradients(opt, model)
    # Clipping runs inside step(): Detectron2 clips each parameter's gradient to CLIP_VALUE.
    # Every parameter's real gradient is far above it at this loss scale, so each norm is the
    # clip value (rounding noise, what a constant input leaves some parameters, is ~1e-3 here).
    assert all(1.0 - 1e-4 < g <= 1.0 + 1e-4 for g in grad_norms), grad_norms
    moved = [(p - b).abs().max().item() for p, b in zip(model.parameters(), before)]
    # AdamW's first step moves each parameter by about the learning rate (0.01), whatever the
    # gradient's scale: m / sqrt(v) is +-1 for every element with |grad| >> eps (1e-8).
    assert all(0.005 < m < 0.02 for m in moved), moved


def test_unknown_optimizer_is_a_one_line_setup_error():
    cfg = cfg_with("SOLVER.OPTIMIZER", "Adam", "MODEL.DEVICE", "cpu",
                   "DATASETS.TRAIN", "()", "DATASETS.TEST", "()")
    with pytest.raises(SetupError, match="SOLVER.OPTIMIZER must be SGD or AdamW, got 'Adam'"):
        preflight(cfg)


def test_trainer_refuses_an_unknown_optimizer_without_preflight():
    # Callers that build a Trainer directly must not get AdamW for a typo.
    with pytest.raises(ValueError, match="SOLVER.OPTIMIZER must be SGD or AdamW, got 'adamw'"):
        Trainer.build_optimizer(cfg_with("SOLVER.OPTIMIZER", "adamw"), small_model())
