"""Each method on a tiny batch of the pipelines' contract: finite loss, parts, diagnostics."""
import pytest
import torch

from motionssl.models.backbones import create_backbone
from motionssl.models.losses import cip_loss, mip_loss
from motionssl.models.methods import (METHODS, MCPNet, Method, MoQuad, Phase, SimCLR, create_method, encode_views,
                                      get_method, own_video_ranks, register_method)

B = 4
CLIP = (3, 8, 32, 32)
HEAD = dict(proj_hidden_dim=32, proj_dim=16)


def clips(*names, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    batch = {name: torch.randn(B, *CLIP, generator=g).to(dtype) for name in names}
    batch["label"] = torch.full((B,), -1, dtype=torch.int64)
    batch["index"] = torch.arange(B)
    return batch


def mcpnet_batch(cip_same):
    batch = clips("rgb", "res_same", "res_diff")
    batch["speed_rgb"] = torch.ones(B, dtype=torch.int64)
    batch["speed_diff"] = torch.full((B,), 2, dtype=torch.int64)
    batch["cip_same"] = cip_same
    return batch


CASES = {
    "moquad": ("moquad", clips("anchor", "positive", "intra_neg", "intra_neg_ad"),
               {"loss_quadruple", "rank_pos", "rank_intra"}),
    "moquad_no_intra": ("moquad", clips("anchor", "positive"), {"loss_quadruple", "rank_pos"}),
    "moquad_warmup": ("moquad", clips("clip_n", "clip_m"), {"loss_appearance", "rank_pos"}),
    "mcpnet": ("mcpnet", mcpnet_batch(torch.tensor([False, True, False, True])),
               {"loss_mip", "loss_cip", "mip_acc", "cip_acc"}),
    "simclr": ("simclr", clips("view1", "view2"), {"loss_nt_xent", "acc"}),
    "simclr_fp16_clips": ("simclr", clips("view1", "view2", dtype=torch.float16), {"loss_nt_xent", "acc"}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_forward_returns_finite_loss_and_diagnostics(case):
    name, batch, keys = CASES[case]
    torch.manual_seed(0)
    method = create_method(name, backbone="tiny", **HEAD)
    out = method(batch)
    assert set(out) == {"loss"} | keys
    assert out["loss"].requires_grad and torch.isfinite(out["loss"])
    for key in keys:
        assert not out[key].requires_grad and torch.isfinite(out[key]), key
    out["loss"].backward()
    assert all(p.grad is not None for p in method.backbone.parameters())


def test_moquad_diagnostic_ranks_lie_among_the_candidates():
    method = create_method("moquad", backbone="tiny", **HEAD)
    out = method(clips("anchor", "positive", "intra_neg", "intra_neg_ad"))
    num_candidates = 4 * B - 1
    for key in ("rank_pos", "rank_intra"):
        assert 1 <= out[key] <= num_candidates


def test_moquad_loss_settings_reach_the_loss():
    batch = clips("anchor", "positive", "intra_neg", "intra_neg_ad")
    torch.manual_seed(0)
    plain = MoQuad(create_backbone("tiny"), beta=0.0, **HEAD)
    mined = MoQuad(create_backbone("tiny"), beta=0.5, alpha=3.0, **HEAD)
    mined.load_state_dict(plain.state_dict())
    assert mined(batch)["loss"] > plain(batch)["loss"]


def test_mcpnet_total_is_eq5_and_cip_follows_cip_same():
    torch.manual_seed(0)
    method = MCPNet(create_backbone("tiny"), alpha=0.3, **HEAD)
    diff = method(mcpnet_batch(torch.zeros(B, dtype=torch.bool)))
    torch.testing.assert_close(diff["loss"].detach(), 0.3 * diff["loss_mip"] + 0.7 * diff["loss_cip"])

    # Recompute both branches by hand from the encoder and the two heads.
    batch = mcpnet_batch(torch.ones(B, dtype=torch.bool))
    same = method(batch)
    with torch.no_grad():
        h = method.backbone(torch.cat([batch["rgb"], batch["res_same"], batch["res_diff"]])).chunk(3)
        f_r, f_l1, f_l2 = method.heads.mip(torch.cat(h)).chunk(3)
        g_r, g_l1 = method.heads.cip(torch.cat([h[0], h[1]])).chunk(2)
    torch.testing.assert_close(same["loss_mip"], mip_loss(f_r, f_l1, f_l2, temperature=0.07))
    torch.testing.assert_close(same["loss_cip"], cip_loss(g_r, g_l1, temperature=0.07))
    assert not torch.isclose(same["loss_cip"], diff["loss_cip"])


def test_encode_views_concatenates_clips_of_equal_shape():
    backbone = create_backbone("tiny")
    calls = []
    backbone.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    views = [torch.randn(2, *CLIP), torch.randn(2, *CLIP), torch.randn(2, 3, 4, 32, 32)]
    features = encode_views(backbone, views)
    assert sorted(calls) == [2, 4]
    assert [f.shape for f in features] == [(2, backbone.feature_dim)] * 3


def test_own_video_ranks_against_brute_force():
    g = torch.Generator().manual_seed(1)
    anchor, members = torch.randn(3, 5, generator=g), torch.randn(3, 2, 5, generator=g)
    members[:, 0] = anchor
    ranks = own_video_ranks(anchor, members, exclude=0)
    cos = torch.nn.functional.cosine_similarity
    for i in range(3):
        candidates = [cos(anchor[i], members[j, m], dim=0) for j in range(3) for m in range(2) if (j, m) != (i, 0)]
        own = cos(anchor[i], members[i, 1], dim=0)
        assert ranks[i, 1] == 1 + sum(int(c > own) for c in candidates)


def test_registry_and_batch_errors():
    with pytest.raises(ValueError) as err:
        create_method("byol", backbone="tiny")
    assert all(name in str(err.value) for name in METHODS)
    with pytest.raises(ValueError, match="cosine_over_tau"):
        create_method("mcpnet", backbone="tiny", mip_sim="l2")
    with pytest.raises(KeyError, match="positive"):
        create_method("moquad", backbone="tiny", **HEAD)(clips("anchor"))
    with pytest.raises(KeyError, match="cip_same"):
        create_method("mcpnet", backbone="tiny", **HEAD)(clips("rgb", "res_same", "res_diff"))


@pytest.mark.parametrize("name,options,match", [
    ("simclr", {"temperature": 0}, r"simclr: method.temperature must be > 0"),
    ("moquad", {"beta": 2.0}, r"moquad: method.beta .* in \[0, 1\]"),
    ("mcpnet", {"margin": -1.0}, r"mcpnet: method.margin"),
    ("mcpnet", {"proj_dim": 0}, r"mcpnet: method.proj_dim must be a whole number >= 1"),
    ("mcpnet", {"residual_bn": "separate"}, r"mcpnet: method.residual_bn='separate'; choose one of .*own"),
    ("moquad", {"temprature": 0.1}, r"unknown moquad method option\(s\) \['temprature'\]; valid: .*temperature"),
])
def test_bad_method_settings_name_the_key(name, options, match):
    with pytest.raises(ValueError, match=match):
        create_method(name, backbone="tiny", **options)


def test_a_methods_options_are_its_models_and_its_phases():
    spec = get_method("moquad")
    assert spec.phase_options() == {"appearance_warmup": 0.2} and "appearance_warmup" not in spec.model_options()
    assert spec.options() == {**spec.model_options(), "appearance_warmup": 0.2}
    assert [(p.name, p.pipeline_config) for p in spec.phases()] == [("appearance warm-up", {"mode": "warmup"}),
                                                                     ("quadruples", {})]
    assert [p.fraction for p in spec.phases(appearance_warmup=0.0)] == [1.0]
    assert get_method("simclr").phase_options() == {}
    with pytest.raises(ValueError, match=r"'twice': its model and its phases both take \['temperature'\]"):
        register_method(Method("twice", SimCLR, pipeline="simclr", phases=lambda temperature=0.1: [Phase("x", 1.0)]))
    assert "twice" not in METHODS


def _norm_state(module):
    return {k: v.clone() for k, v in module.state_dict().items() if "running" in k or "num_batches" in k}


def _residual_batch():
    """RGB clips around 1 with spread 2; residual clips near 0 with spread 0.1: statistics that differ."""
    g = torch.Generator().manual_seed(1)
    batch = mcpnet_batch(torch.zeros(B, dtype=torch.bool))
    batch["rgb"] = 1 + 2 * torch.randn(B, *CLIP, generator=g)
    for key in ("res_same", "res_diff"):
        batch[key] = 0.1 * torch.rand(B, *CLIP, generator=g)
    return batch


def test_mcpnet_own_residual_norms_keep_the_backbone_statistics_rgb_only():
    """residual_bn=own: the backbone's BatchNorm statistics are those of the RGB clips alone."""
    torch.manual_seed(0)
    batch = _residual_batch()
    method = create_method("mcpnet", backbone="tiny", residual_bn="own", **HEAD).train()
    reference = create_backbone("tiny")
    reference.load_state_dict(method.backbone.state_dict())
    own_before = _norm_state(method.residual_norms)
    out = method(batch)
    out["loss"].backward()
    reference.train()(batch["rgb"])  # the RGB clips alone through a copy of the backbone
    for key, value in _norm_state(reference).items():
        torch.testing.assert_close(method.backbone.state_dict()[key], value, msg=key)
    own_after = _norm_state(method.residual_norms)
    assert any(not torch.equal(own_before[k], own_after[k]) for k in own_before if "running_mean" in k)
    assert all(p.grad is not None for p in method.residual_norms.parameters())
    # The saved backbone has exactly the keys of a plain backbone: eval.py loads it as before.
    assert set(method.backbone.state_dict()) == set(reference.state_dict())


def test_mcpnet_joint_mixes_and_split_separates_the_batch_statistics():
    """joint: RGB and residual clips normalised together; split: separately, through the same layers."""
    batch = _residual_batch()
    torch.manual_seed(0)
    joint = create_method("mcpnet", backbone="tiny", residual_bn="joint", **HEAD).train()
    split = create_method("mcpnet", backbone="tiny", residual_bn="split", **HEAD).train()
    split.load_state_dict(joint.state_dict())
    backbone = create_backbone("tiny")
    backbone.load_state_dict(joint.backbone.state_dict())
    alone = backbone.train()(batch["rgb"])  # batch statistics of the RGB clips only
    torch.testing.assert_close(split.encode(batch)[0], alone)
    assert not torch.allclose(joint.encode(batch)[0], alone, atol=1e-3)
    for method in (joint, split):
        method(batch)["loss"].backward()
        assert method.residual_norms is None
