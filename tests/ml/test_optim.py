import pytest
import torch

from training.ml.device import autocast, pick_device
from training.ml.optim import lr_at, make_optimizer, set_lr
from training.ml.progress import Progress, report, tqdm_reporter


def test_lr_warms_up_linearly_then_decays_by_cosine_to_the_floor():
    kw = dict(max_lr=1.0, warmup_steps=10, total_steps=110, min_lr_ratio=0.1)
    assert lr_at(0, **kw) == pytest.approx(0.1)
    assert lr_at(9, **kw) == pytest.approx(1.0)
    assert lr_at(60, **kw) == pytest.approx(0.55)  # halfway down the cosine
    assert lr_at(110, **kw) == pytest.approx(0.1) == lr_at(500, **kw)
    schedule = [lr_at(s, **kw) for s in range(10, 111)]
    assert schedule == sorted(schedule, reverse=True)


def test_only_matrices_are_decayed(make_model):
    model = make_model()
    optimizer = make_optimizer(model, lr=3e-4)
    decayed, plain = optimizer.param_groups
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert all(p.dim() == 2 for p in decayed["params"]) and all(
        p.dim() == 1 for p in plain["params"]
    )
    assert sum(p.numel() for g in optimizer.param_groups for p in g["params"]) == model.num_params()
    set_lr(optimizer, 0.5)
    assert {g["lr"] for g in optimizer.param_groups} == {0.5}


def test_device_defaults_to_what_is_there():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    with autocast(torch.device("cpu")):
        assert torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype == torch.float32
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            pick_device("cuda")


def test_reporting_calls_back_and_passes_on_a_stop_request(capsys):
    seen = []
    assert report(lambda p: seen.append(p.step), Progress("sft", 1, 3, {"loss": 2.0})) is False
    assert report(lambda p: True, Progress("sft", 2, 3)) is True
    assert report(None, Progress("sft", 3, 3)) is False
    bar = tqdm_reporter("pretrain")
    for step in (1, 2, 3):
        assert not bar(Progress("pretrain", step, 3, {"loss": 1.0 / step}))
    assert "3/3" in capsys.readouterr().err
