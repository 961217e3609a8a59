"""timm models: the paper's four ImageNet architectures build and take a Bort step; Bort constrains a ViT's
Conv/Linear weights and never its norms, biases, position embeddings or tokens."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from xbench.errors import XbenchError
from xbench.layers import constrained_weights
from xbench.models import create_model
from xbench.optim import create_optimizer

PAPER_MODELS = ["vgg16", "resnet50", "deit_small_patch16_224", "swin_small_patch4_window7_224"]


@pytest.mark.slow  # 10-30 s each on 2 CPU cores: timm's initialisation and Δ of every full-size weight
@pytest.mark.parametrize("name", PAPER_MODELS)
def test_paper_models_build_and_take_a_bort_step(name):
    torch.manual_seed(0)
    model = create_model(f"timm:{name}", (3, 32, 32), num_classes=5)
    opt = create_optimizer("bort-s", model, lr=0.01, weight_decay=0.0, momentum=0.0, bort_lambda=0.1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    loss = nn.functional.cross_entropy(model(torch.randn(2, 3, 32, 32)), torch.tensor([0, 3]))
    opt.zero_grad()
    loss.backward()
    opt.step()
    moved = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert moved and model.feature_layer and model.get_submodule(model.feature_layer) is not None
    assert all(torch.isfinite(p).all() for p in model.parameters())


def _deit():
    torch.manual_seed(0)
    return create_model("timm:deit_tiny_patch16_224", (3, 32, 32), num_classes=4)


def test_bort_constrains_a_deits_projections_and_nothing_else():
    model = _deit()
    names = {f"{n}.weight" for n, _ in constrained_weights(model)}
    expected = {n for n, p in model.named_parameters()  # written out from the ViT's structure, not from layers.py
                if n.endswith(("attn.qkv.weight", "attn.proj.weight", "mlp.fc1.weight", "mlp.fc2.weight"))
                or n in ("patch_embed.proj.weight", "head.weight")}
    assert names == expected and len(expected) == 12 * 4 + 2
    # with no task loss and no weight decay, a strong Bort step moves exactly the constrained weights
    opt = create_optimizer("bort-a", model, lr=0.1, weight_decay=0.0, bort_lambda=1.0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for _ in range(2):
        opt.zero_grad()
        (model(torch.randn(2, 3, 32, 32)).sum() * 0).backward()
        opt.step()
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert moved == expected
    untouched = {"pos_embed", "cls_token", "norm.weight", "norm.bias", "blocks.0.norm1.weight",
                 "blocks.0.attn.qkv.bias", "head.bias"}
    assert untouched <= set(before) and not (untouched & moved)


def test_unknown_timm_name_is_one_user_error():
    with pytest.raises(XbenchError, match="timm has no model 'resnet5000'") as info:
        create_model("timm:resnet5000", (3, 32, 32), 10)
    assert "\n" not in str(info.value)
    with pytest.raises(XbenchError, match="drop_path"):
        create_model("timm:resnet18", (3, 32, 32), 10, drop_path=2.0)
