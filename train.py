"""Train MoQuad, MCPNet or the SimCLR baseline on DALI pipelines.

    python train.py --pipeline moquad                      # the CPU demo: demo data, tiny backbone
    python train.py --pipeline mcpnet --config configs/mcpnet_r3d18.yaml --data data/k400 split=train
    torchrun --nproc_per_node 8 train.py --pipeline moquad --config configs/moquad_r3d18.yaml --data ...

``key=value`` arguments override the config files (``optim.lr=0.8``, ``pipeline_config.clip.frames=8``).
The loop is deliberately plain; the parts live in ``pipelines/`` and ``models/``. Where the
run stands is the global step alone: epoch and batch follow from it, so a run resumed
from any checkpoint — mid-epoch, on an epoch's last step, across the MoQuad warm-up
switch — continues with exactly the batches and losses of the uninterrupted run.
"""
import argparse
import contextlib
import dataclasses
import os
import time

import torch
from tqdm import tqdm

from models import runtime
from models.backbones import create_backbone, to_channels_last
from models.methods import create_method
from models.optim import build_optimizer, cosine_schedule, mcpnet_lr, moquad_lr
from models.training import (Checkpointer, MetricsLog, load_checkpoint, load_config, rng_state, set_rng_state,
                             to_dict)
from pipelines import PIPELINES, demo, load_index, make_iterator

PAPER_LR = {"moquad": moquad_lr, "mcpnet": mcpnet_lr, "simclr": moquad_lr}  # SimCLR/CVRL: LARS, 3.2 @ 256


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pipeline", required=True, choices=sorted(PIPELINES))
    p.add_argument("--config", action="append", default=[], help="YAML file(s); later ones win (default: configs/demo/<pipeline>.yaml)")
    p.add_argument("--data", help="dataset folder, prepared dataset or `path label [num_frames]` list (default: demo data)")
    p.add_argument("--out", help="run folder for logs and checkpoints (default: runs/<pipeline>-<time>)")
    p.add_argument("--resume", help="checkpoint file or run folder to continue from (exactly, mid-epoch)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. epochs=5 optim.lr=0.1")
    return p.parse_intermixed_args(argv)


def main(argv=None):
    args = parse_args(argv)
    files = args.config or [os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "demo", f"{args.pipeline}.yaml")]
    cfg = load_config(files, args.overrides, pipeline=args.pipeline, data=args.data, out=args.out)
    if args.resume:  # the run's own config, so the resumed run is the same run
        state = load_checkpoint(args.resume)
        cfg = load_config([], args.overrides, **state["config"])
    rt = runtime.start(cfg.device)
    torch.manual_seed(cfg.seed)
    data, split, test_split = cfg.data, cfg.split, cfg.test_split
    if data is None:  # the embedded demo: generated once into the cache (rank 0 first)
        data = runtime.rank_zero_first(rt, demo.generate)
        split, test_split = split or "train", test_split or "test"
    index = load_index(data, split=split)
    opts = dict(cfg.loader)
    modes = ["warmup", "quad"] if cfg.pipeline == "moquad" and cfg.appearance_warmup > 0 else [None]

    def loader(mode):  # MoQuad Algorithm 1: the appearance task (Eq. 2) first, then quadruples
        pc = dict(cfg.pipeline_config, **({"mode": mode} if mode else {}))
        return make_iterator(cfg.pipeline, index, cfg.batch_size, rt.kind, cfg.seed, rt.rank, rt.world, config=pc,
                             device_id=rt.local_rank, **opts)

    loaders = {m: loader(m) for m in modes}
    main_loader = loaders[modes[-1]]
    steps_per_epoch = len(main_loader)
    assert all(len(it) == steps_per_epoch for it in loaders.values()), "warm-up and quadruple epochs differ"
    warm_epochs = round(cfg.appearance_warmup * cfg.epochs) if len(modes) == 2 else 0
    backbone = create_backbone(cfg.backbone, **cfg.backbone_kwargs)
    if rt.kind == "gpu":
        torch.backends.cudnn.benchmark = True  # fixed clip shapes: let cuDNN pick the fastest 3D convolutions
        to_channels_last(backbone)
    method = create_method(cfg.pipeline, backbone=backbone, **cfg.method).to(rt.device)
    if rt.distributed and rt.kind == "gpu" and cfg.sync_batchnorm:
        method = torch.nn.SyncBatchNorm.convert_sync_batchnorm(method)  # BN over the global batch, as SimCLR
    model = torch.nn.parallel.DistributedDataParallel(method, device_ids=[rt.local_rank] if rt.kind == "gpu" else None) if rt.distributed else method
    lr = cfg.optim.lr if cfg.optim.lr is not None else PAPER_LR[cfg.pipeline](cfg.batch_size * rt.world)
    optimizer = build_optimizer(cfg.optim.name, method, lr, cfg.optim.weight_decay, cfg.optim.momentum)
    total = cfg.epochs * steps_per_epoch
    scheduler = cosine_schedule(optimizer, total, round(cfg.optim.warmup_epochs * steps_per_epoch))
    out = cfg.out or os.path.join("runs", f"{cfg.pipeline}-{time.strftime('%Y%m%d-%H%M%S')}")
    saved = dataclasses.replace(cfg, out=out, pipeline_config=dataclasses.asdict(main_loader.config))
    checkpoints = Checkpointer(os.path.join(out, "checkpoints"), cfg.keep_checkpoints, writer=rt.main)
    if not args.resume and checkpoints.latest():
        raise SystemExit(f"{out} already holds checkpoints (up to step {checkpoints.latest_step()}): continue it "
                         f"with --resume {out}, or choose another --out")
    step = 0
    if args.resume:
        method.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step = state["step"]
        set_rng_state(state["rng"], cuda=rt.kind == "gpu")
        main_loader.load_state_dict(state["iterator"])  # same data, seed, batch and world size, or a clear error
    log = MetricsLog(out, rt.main, resume_step=step)  # a resumed run's log holds no replayed steps
    if rt.main:
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "config.yaml"), "w") as f:
            import yaml
            yaml.safe_dump(to_dict(saved), f, sort_keys=False)
        print(f"{cfg.pipeline}: {len(index)} videos, {steps_per_epoch} steps/epoch x {cfg.epochs} epochs, "
              f"batch {cfg.batch_size}x{rt.world}, lr {lr:g}, {cfg.backbone} on {rt.kind}, {main_loader.decoder} "
              f"decoding; run folder {out}")

    def save():
        return checkpoints.save({"config": to_dict(saved), "model": method.state_dict(),
                                 "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                 "step": step, "epoch": step // steps_per_epoch, "rng": rng_state(),
                                 "iterator": main_loader.state_dict()}, step)

    autocast = torch.autocast("cuda", torch.bfloat16) if rt.kind == "gpu" and cfg.precision != "fp32" else contextlib.nullcontext()
    last_step = total if not cfg.max_steps else min(total, cfg.max_steps)
    bar = tqdm(total=last_step, initial=step, disable=not rt.main, dynamic_ncols=True)
    model.train()
    while step < last_step:
        epoch, iteration = divmod(step, steps_per_epoch)
        it = loaders[modes[0] if epoch < warm_epochs else modes[-1]]
        if it is main_loader and len(modes) == 2:
            loaders[modes[0]].close()  # warm-up over: stop its graph's worker processes
        it.seek(epoch, iteration)
        tick = time.perf_counter()
        for batch in it:
            with autocast:
                result = model(batch)
            loss = result["loss"]
            # One host sync per step: a non-finite loss must stop before it touches the weights,
            # and on every rank at once (a rank stopping alone would hang the others).
            if runtime.any_rank(not torch.isfinite(loss), rt):
                path = checkpoints.latest()
                raise SystemExit(f"non-finite loss at step {step} (epoch {epoch}, batch {step % steps_per_epoch}) on "
                                 f"at least one rank; last good checkpoint: {path}. Lower optim.lr or check the data.")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            if step % cfg.log_every == 0 or step == last_step:
                now = time.perf_counter()
                clips = sum(v.shape[0] for v in batch.values() if v.ndim == 5) * rt.world * cfg.log_every
                scalars = {k: float(v.detach()) for k, v in result.items() if v.numel() == 1}
                scalars.update(lr=scheduler.get_last_lr()[0], clips_per_s=clips / (now - tick), epoch=epoch)
                log.write(step, scalars)
                bar.set_postfix(loss=f"{scalars['loss']:.3f}", clips_s=f"{scalars['clips_per_s']:.0f}")
                tick = now
            bar.update(1)
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                save()
            elif not cfg.checkpoint_every and step % steps_per_epoch == 0:
                save()  # at the end of every epoch
            if step >= last_step:
                break
    bar.close()
    path = checkpoints.latest() if checkpoints.latest_step() == step else save()
    log.close()
    if rt.main:
        print(f"done: {step} steps; checkpoint {path}; logs {os.path.join(out, 'metrics.jsonl')}")
    for it in loaders.values():
        it.close()
    if cfg.retrieval and test_split is not None:  # every rank extracts its shard of the views
        report_retrieval(method.backbone, data, split, test_split, main_loader.config.clip, rt, cfg, out)
    runtime.stop(rt)
    return path


def report_retrieval(backbone, data, split, test_split, clip, rt, cfg, out):
    """Retrieval on the test split (queries) against the train split, trained vs random init.

    Runs on every rank (each extracts its shard of the views); rank 0 prints and writes.
    """
    from models.protocols import run_retrieval

    train_index, test_index = load_index(data, split=split), load_index(data, split=test_split)
    aug = clip.augment
    args = dict(frames=clip.frames, size=aug.size, mean=aug.mean, std=aug.std, device=rt.kind)
    torch.manual_seed(cfg.seed)
    random_init = create_backbone(cfg.backbone, **cfg.backbone_kwargs)
    rows = {"pre-trained": run_retrieval(backbone.eval(), train_index, test_index, **args),
            "random init": run_retrieval(random_init.eval(), train_index, test_index, **args)}
    if not rt.main:
        return
    print(f"\nretrieval on {test_split} ({len(test_index)} queries) against {split} ({len(train_index)} videos):")
    print(f"{'':>12}  {'top-1':>6}  {'top-5':>6}")
    for name, r in rows.items():
        print(f"{name:>12}  {100 * r['top1']:6.1f}  {100 * r['top5']:6.1f}")
    with open(os.path.join(out, "retrieval.json"), "w") as f:
        import json
        json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
