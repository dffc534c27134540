"""Every registered backbone: forward, backward, no NaN, a gradient in every parameter."""
import pytest
import torch
import torch.nn.functional as F

from motionssl.models.backbones import BACKBONES, S3DG, SelfGating, create_backbone, to_channels_last
from motionssl.models.methods import as_backbone_input

# Smallest clips each backbone takes comfortably: S3D-G downsamples T by 8 and
# H, W by 32, the others by at most that.
SMALL = (2, 3, 8, 32, 32)


@pytest.fixture(scope="module", params=sorted(BACKBONES))
def backbone(request):
    torch.manual_seed(0)
    return create_backbone(request.param)


def test_forward_backward_every_parameter_gets_gradient(backbone):
    x = torch.randn(*SMALL)
    out = backbone(x)
    assert out.shape == (SMALL[0], backbone.feature_dim)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, backbone.features(x))  # forward == features (BN train mode is deterministic)
    backbone.zero_grad()
    (out ** 2).mean().backward()
    for name, p in backbone.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_unknown_backbone_lists_choices():
    with pytest.raises(ValueError) as err:
        create_backbone("resnet9000")
    for name in BACKBONES:
        assert name in str(err.value)


def test_s3dg_gates_stem_and_every_inception_branch():
    model = S3DG()
    gates = [m for m in model.modules() if isinstance(m, SelfGating)]
    assert len(gates) == 1 + 9 * 4  # Conv2d_2c_3x3 + 4 branches x 9 Inception blocks
    assert sum(p.numel() for p in model.parameters()) > sum(p.numel() for p in gates[0].parameters())


def test_self_gating_is_a_per_channel_sigmoid_of_the_pooled_input():
    gate = SelfGating(4)
    x = torch.randn(2, 4, 3, 5, 5)
    weights = torch.sigmoid(gate.fc(x.mean(dim=(2, 3, 4))))
    torch.testing.assert_close(gate(x), x * weights[:, :, None, None, None])


def test_channels_last_backbones_get_their_input_in_one_copy():
    """The layout that makes the tiny net fast on CPU (benchmarks/backbone_layout.py measures how fast)
    and the 3D nets on GPU: weights channels-last, clips converted once to the compute dtype and layout."""
    tiny = create_backbone("tiny")
    assert tiny.channels_last
    assert all(p.is_contiguous(memory_format=torch.channels_last_3d) for p in tiny.parameters() if p.ndim == 5)
    r3d = create_backbone("r3d_18")
    assert not r3d.channels_last
    clips = torch.randn(2, 3, 8, 32, 32).half()  # as a GPU pipeline hands them over
    assert as_backbone_input(clips, r3d).dtype == torch.float32
    to_channels_last(r3d)
    assert r3d.channels_last and r3d.net.stem[0].weight.is_contiguous(memory_format=torch.channels_last_3d)
    x = as_backbone_input(clips, r3d)
    assert x.dtype == torch.float32 and x.is_contiguous(memory_format=torch.channels_last_3d)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # straight to the autocast dtype, not up to float32 first
        assert as_backbone_input(clips, r3d).dtype == torch.bfloat16
    torch.testing.assert_close(r3d.eval()(x), r3d(clips.float()))


def _moving_square_clips(n, speeds, generator, frames=8, size=32, square=6):
    """Clips (n, 3, T, H, W) of a bright square moving right at 1 or 3 px/frame."""
    clips = torch.zeros(n, 3, frames, size, size)
    labels = torch.randint(0, len(speeds), (n,), generator=generator)
    for i in range(n):
        speed = speeds[labels[i]]
        x0 = int(torch.randint(0, size - square - speed * (frames - 1), (1,), generator=generator))
        y0 = int(torch.randint(0, size - square, (1,), generator=generator))
        for t in range(frames):
            x = x0 + speed * t
            clips[i, :, t, y0:y0 + square, x:x + square] = 1.0
    return clips, labels


def test_tiny_learns_to_tell_speeds_apart():
    """Temporal kernels let the tiny net read motion: same appearance,
    different speed, separable after a few dozen steps."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    model = create_backbone("tiny", widths=(8, 16, 32))
    classifier = torch.nn.Linear(model.feature_dim, 2)
    params = list(model.parameters()) + list(classifier.parameters())
    optimizer = torch.optim.Adam(params, lr=1e-2)
    for _ in range(40):
        clips, labels = _moving_square_clips(16, (1, 3), g)
        loss = F.cross_entropy(classifier(model(clips)), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    clips, labels = _moving_square_clips(64, (1, 3), g)
    with torch.no_grad():
        accuracy = (classifier(model(clips)).argmax(1) == labels).float().mean()
    assert accuracy > 0.9


@pytest.mark.gpu
@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_bf16_autocast_on_cuda(name):
    model = create_backbone(name).cuda()
    x = torch.randn(2, 3, 16, 64, 64, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = model(x)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    out.float().pow(2).mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
