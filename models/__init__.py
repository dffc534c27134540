"""Models for self-supervised video learning, and what the entry points build around them.

Pure PyTorch, independent of DALI:

    models.backbones    BACKBONES, create_backbone: clip (B, C, T, H, W) -> feature (B, F)
    models.heads        ProjectionHead, MCPNetHeads
    models.losses       MoQuad / MCPNet / SimCLR losses as pure functions
    models.distributed  all_gather_with_grad for negatives from every rank
    models.methods      METHODS, create_method: batch dict -> {"loss", parts, diagnostics}
    models.optim        LARS, build_optimizer, cosine_schedule, learning-rate scaling rules
    models.evaluation   per-video averaging, retrieval and classification metrics, probe and fine-tuning loops
    models.runtime      device, torchrun ranks, decisions taken by all ranks, termination signals

Using the pipelines' config builder and evaluation views:

    models.training     TrainConfig, checkpoints (and the backbone in one), metrics log
    models.protocols    retrieval, linear probe and fine-tuning on the evaluation views

Submodules are imported on demand (`from models.methods import create_method`)
so that the losses load without torchvision, e.g. in spawned worker processes.
"""
