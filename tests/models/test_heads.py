import pytest
import torch
from torch import nn

from motionssl.models.heads import MCPNetHeads, ProjectionHead


@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_projection_head_layout_and_shape(num_layers):
    head = ProjectionHead(32, hidden_dim=16, out_dim=8, num_layers=num_layers)
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    norms = [m for m in head.modules() if isinstance(m, nn.BatchNorm1d)]
    assert len(linears) == num_layers and len(norms) == num_layers - 1
    assert head(torch.randn(4, 32)).shape == (4, 8)


def test_projection_head_is_linear_bn_relu_linear_by_default():
    head = ProjectionHead(32)
    assert [type(m) for m in head.mlp] == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert head.mlp[0].out_features == 2048 and head.mlp[-1].out_features == 128


def test_projection_head_rejects_zero_layers():
    with pytest.raises(ValueError, match="num_layers"):
        ProjectionHead(32, num_layers=0)


def test_mcpnet_heads_have_separate_parameters():
    heads = MCPNetHeads(32, hidden_dim=16, out_dim=8)
    mip = {id(p) for p in heads.mip.parameters()}
    assert mip.isdisjoint(id(p) for p in heads.cip.parameters())
    x = torch.randn(4, 32)
    assert not torch.allclose(heads.mip(x), heads.cip(x))
