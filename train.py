"""Train MoQuad, MCPNet or the SimCLR baseline on DALI pipelines.

    python train.py --pipeline moquad                      # the CPU demo: demo data, tiny backbone
    python train.py --pipeline mcpnet --config configs/mcpnet_r3d18.yaml --data data/k400 split=train
    torchrun --nproc_per_node 8 train.py --pipeline moquad --config configs/moquad_r3d18.yaml --data ...

``key=value`` arguments override the config files (``optim.lr=0.8``, ``pipeline_config.clip.frames=8``).
The loop is deliberately plain; the parts live in ``pipelines/`` and ``models/``.
"""
import argparse
import contextlib
import dataclasses
import os
import time

import torch
import torch.distributed as dist
from tqdm import tqdm

from models.backbones import create_backbone
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


def setup(cfg):
    """Device, rank and world size; initialises torch.distributed under torchrun."""
    gpu = cfg.device == "gpu" or (cfg.device == "auto" and torch.cuda.is_available())
    if cfg.device == "gpu" and not torch.cuda.is_available():
        raise SystemExit("device=gpu but CUDA is not available; use device=cpu")
    rank, world, local = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))
    if world > 1:
        dist.init_process_group("nccl" if gpu else "gloo")
    if gpu:
        torch.cuda.set_device(local)
    return ("gpu" if gpu else "cpu"), torch.device(f"cuda:{local}" if gpu else "cpu"), rank, world, local


def main(argv=None):
    args = parse_args(argv)
    files = args.config or [os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "demo", f"{args.pipeline}.yaml")]
    cfg = load_config(files, args.overrides, pipeline=args.pipeline, data=args.data, out=args.out)
    if args.resume:  # the run's own config, so the resumed run is the same run
        state = load_checkpoint(args.resume)
        cfg = load_config([], args.overrides, **state["config"])
    kind, device, rank, world, local = setup(cfg)
    torch.manual_seed(cfg.seed)
    data, split, test_split = cfg.data, cfg.split, cfg.test_split
    if data is None:  # the embedded demo: generated once into the cache (rank 0 first)
        data = demo.generate() if rank == 0 else None
        if world > 1:
            dist.barrier()
            data = demo.generate()
        split, test_split = split or "train", test_split or "test"
    index = load_index(data, split=split)
    opts = dict(cfg.loader)
    modes = ["warmup", "quad"] if cfg.pipeline == "moquad" and cfg.appearance_warmup > 0 else [None]

    def loader(mode):  # MoQuad Algorithm 1: the appearance task (Eq. 2) first, then quadruples
        pc = dict(cfg.pipeline_config, **({"mode": mode} if mode else {}))
        return make_iterator(cfg.pipeline, index, cfg.batch_size, kind, cfg.seed, rank, world, config=pc,
                             device_id=local, **opts)

    loaders = {m: loader(m) for m in modes}
    main_loader = loaders[modes[-1]]
    steps_per_epoch = len(main_loader)
    warm_epochs = round(cfg.appearance_warmup * cfg.epochs) if len(modes) == 2 else 0
    backbone = create_backbone(cfg.backbone, **cfg.backbone_kwargs)
    method = create_method(cfg.pipeline, backbone=backbone, **cfg.method).to(device)
    model = torch.nn.parallel.DistributedDataParallel(method, device_ids=[local] if kind == "gpu" else None) if world > 1 else method
    lr = cfg.optim.lr if cfg.optim.lr is not None else PAPER_LR[cfg.pipeline](cfg.batch_size * world)
    optimizer = build_optimizer(cfg.optim.name, method, lr, cfg.optim.weight_decay, cfg.optim.momentum)
    total = cfg.epochs * steps_per_epoch
    scheduler = cosine_schedule(optimizer, total, round(cfg.optim.warmup_epochs * steps_per_epoch))
    out = cfg.out or os.path.join("runs", f"{cfg.pipeline}-{time.strftime('%Y%m%d-%H%M%S')}")
    saved = dataclasses.replace(cfg, out=out, pipeline_config=dataclasses.asdict(main_loader.config))
    checkpoints, log = Checkpointer(os.path.join(out, "checkpoints"), cfg.keep_checkpoints), MetricsLog(out, rank == 0)
    step, epoch, iteration = 0, 0, 0
    if args.resume:
        method.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, epoch, iteration = state["step"], state["iterator"]["epoch"], state["iterator"]["iteration"]
        set_rng_state(state["rng"])
    if rank == 0:
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "config.yaml"), "w") as f:
            import yaml
            yaml.safe_dump(to_dict(saved), f, sort_keys=False)
        print(f"{cfg.pipeline}: {len(index)} videos, {steps_per_epoch} steps/epoch x {cfg.epochs} epochs, "
              f"batch {cfg.batch_size}x{world}, lr {lr:g}, {cfg.backbone} on {kind}; run folder {out}")

    def save():
        if rank == 0:
            return checkpoints.save({"config": to_dict(saved), "model": method.state_dict(), "optimizer": optimizer.state_dict(),
                                     "scheduler": scheduler.state_dict(), "step": step, "epoch": epoch,
                                     "iterator": {"epoch": epoch, "iteration": iteration}, "rng": rng_state()}, step)

    autocast = torch.autocast("cuda", torch.bfloat16) if kind == "gpu" and cfg.precision != "fp32" else contextlib.nullcontext()
    last_steps = total if not cfg.max_steps else min(total, cfg.max_steps)
    bar = tqdm(total=last_steps, initial=step, disable=rank != 0, dynamic_ncols=True)
    model.train()
    while step < last_steps:
        it = loaders[modes[0] if epoch < warm_epochs else modes[-1]]
        if it is main_loader and len(modes) == 2:
            loaders[modes[0]].close()  # warm-up over: stop its graph's worker processes
        it.seek(epoch, iteration)
        tick = time.perf_counter()
        for batch in it:
            with autocast:
                result = model(batch)
            loss = result["loss"]
            # One host sync per step: a non-finite loss must stop before it touches the weights.
            if not torch.isfinite(loss):
                path = checkpoints.latest()
                raise SystemExit(f"non-finite loss {loss.item()} at step {step} (epoch {epoch}, batch {iteration}); "
                                 f"last good checkpoint: {path}. Lower optim.lr or check the data.")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step, iteration = step + 1, iteration + 1
            if step % cfg.log_every == 0 or step == last_steps:
                now = time.perf_counter()
                clips = sum(v.shape[0] for v in batch.values() if v.ndim == 5) * world * cfg.log_every
                scalars = {k: float(v.detach()) for k, v in result.items() if v.numel() == 1}
                scalars.update(lr=scheduler.get_last_lr()[0], clips_per_s=clips / (now - tick), epoch=epoch)
                log.write(step, scalars)
                bar.set_postfix(loss=f"{scalars['loss']:.3f}", clips_s=f"{scalars['clips_per_s']:.0f}")
                tick = now
            bar.update(1)
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                save()
            if step >= last_steps:
                break
        if iteration >= len(it):
            epoch, iteration = epoch + 1, 0
            if not cfg.checkpoint_every:
                save()
    bar.close()
    path = save()
    log.close()
    if rank == 0:
        print(f"done: {step} steps; checkpoint {path}; logs {os.path.join(out, 'metrics.jsonl')}")
        if cfg.retrieval and test_split is not None:
            report_retrieval(method.backbone, data, split, test_split, main_loader.config.clip, kind, cfg, out)
    if world > 1:
        dist.destroy_process_group()
    return path


def report_retrieval(backbone, data, split, test_split, clip, kind, cfg, out):
    """Retrieval on the test split (queries) against the train split, trained vs random init."""
    from eval import run_retrieval

    train_index, test_index = load_index(data, split=split), load_index(data, split=test_split)
    aug = clip.augment
    args = dict(frames=clip.frames, size=aug.size, mean=aug.mean, std=aug.std, device=kind)
    torch.manual_seed(cfg.seed)
    random_init = create_backbone(cfg.backbone, **cfg.backbone_kwargs)
    rows = {"pre-trained": run_retrieval(backbone.eval(), train_index, test_index, **args),
            "random init": run_retrieval(random_init.eval(), train_index, test_index, **args)}
    print(f"\nretrieval on {test_split} ({len(test_index)} queries) against {split} ({len(train_index)} videos):")
    print(f"{'':>12}  {'top-1':>6}  {'top-5':>6}")
    for name, r in rows.items():
        print(f"{name:>12}  {100 * r['top1']:6.1f}  {100 * r['top5']:6.1f}")
    with open(os.path.join(out, "retrieval.json"), "w") as f:
        import json
        json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
