"""Models for self-supervised video learning: pure PyTorch, independent of the pipelines and DALI.

    models.backbones    BACKBONES, create_backbone: clip (B, C, T, H, W) -> feature (B, F)
    models.heads        ProjectionHead, MCPNetHeads
    models.losses       MoQuad / MCPNet / SimCLR losses as pure functions
    models.distributed  all_gather_with_grad for negatives from every rank
    models.methods      METHODS, create_method: batch dict -> {"loss", parts, diagnostics}
    models.optim        LARS, build_optimizer, cosine_schedule, learning-rate scaling rules
    models.evaluation   per-video averaging, retrieval and classification metrics, probe and fine-tuning loops

The run around them — its config, checkpoints, devices and ranks, and the evaluation
protocols on the pipelines' views — is the application's (``motionssl.training``,
``motionssl.runtime``, ``motionssl.protocols``).

Submodules are imported on demand (`from models.methods import create_method`)
so that the losses load without torchvision, e.g. in spawned worker processes.
"""
