"""The rows of the fidelity table (:mod:`benchmarks.fidelity`): each a method, its configs and what it changes.

Six groups, in table order: ``main`` (the controls, the labelled and random references and
the methods), the papers' ablations of MoQuad and MCPNet (each against the row it changes,
with the direction the paper found), ``diagnostics`` (what the investigation switched),
``sweeps`` (the settings the small configs have not been tuned on, each against the main row
it varies, to adopt what wins beyond the seed interval) and ``finetuning`` (the papers'
headline claim: fine-tuning from a method's checkpoint of the same seed against fine-tuning
from scratch, on all the labels and on a tenth of them; first with the checkpoints' augmentation,
then again with the papers' fine-tuning augmentation).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Sequence

BASE = {m: os.path.join("configs", "small", f"{m}.yaml") for m in ("simclr", "moquad", "mcpnet")}
ABLATION = os.path.join("configs", "ablations")
PAPER_PAIRS = (os.path.join(ABLATION, "mcpnet_paper_negatives.yaml"),)
CONTROLS = ("motion_descriptor", "still_appearance")


@dataclass(frozen=True)
class Row:
    """One line of the table: a method, the config files on top of its base config, overrides."""

    name: str
    method: str  # a train.py pipeline, or "random", "supervised" or a control (CONTROLS): no pre-training
    group: str
    what: str
    configs: tuple = ()
    overrides: tuple = ()
    base: str = ""  # an ablation: the row it changes
    paper: str = ""  # what the paper found the change does to accuracy: "worse", "better", or "" (not in it)
    steps: int = 0  # the row's own optimiser steps (0: the table's --steps)
    pretrained: str = ""  # a fine-tuning row: the main row whose checkpoint (same seed) it starts from; "": scratch
    labels: float = 1.0  # a fine-tuning row: the share of the training labels it trains on
    same_steps: bool = False  # a fine-tuning row on a share of the labels: as many steps as on all of them
    augment: str = "checkpoint"  # a fine-tuning row's training augmentation (eval.py finetune --augment)
    evidence: str = ""  # what the row is evidence for, where its group's sentence (EVIDENCE) does not say it

    def evidence_for(self) -> str:
        return self.evidence or EVIDENCE[self.group]


def _ab(*names: str) -> tuple:
    """The ablation config files ``names``."""
    return tuple(os.path.join(ABLATION, name + ".yaml") for name in names)


def _mcp(name: str) -> tuple:
    """An MCPNet ablation: it varies the paper's method, not the small config's reversed MIP negative."""
    return PAPER_PAIRS + _ab(name)


# What a group's rows are evidence for, unless a row says otherwise (Row.evidence).
EVIDENCE = {
    "main": "whether the method's features carry motion on data where appearance carries no label",
    "moquad_ablations": "whether the paper's choice matters on this data (the paper's direction, paired seeds)",
    "mcpnet_ablations": "whether the paper's choice matters on this data (the paper's direction, paired seeds)",
    "diagnostics": "what a setting the small configs changed from the papers (or could change) does here",
    "sweeps": "whether the small config is tuned on this setting (adopt what wins beyond the interval)",
    "finetuning": "the papers' claim: pre-training improves fine-tuning over scratch, most with few labels",
}

MAIN = (
    Row("motion-control", "motion_descriptor", "main",
        "control: hand-made motion features (affine flow of what changes), no appearance, no learning",
        evidence="that motion alone solves the task: the top of the benchmark's range"),
    Row("appearance-control", "still_appearance", "main",
        "control: the colours of one frame, no motion, no learning",
        evidence="that appearance alone scores at chance: the bottom of the range"),
    Row("supervised", "supervised", "main",
        "labelled reference: the tiny network trained from scratch on the labels (eval.py finetune, "
        "linear column: its top-1)", evidence="what this network reaches with every label: the methods' target"),
    Row("random", "random", "main", "randomly initialised backbone, no pre-training",
        evidence="what an untrained network's features score: the floor a method must clear"),
    Row("simclr", "simclr", "main", "SimCLR, two clips of a video at speed 1"),
    Row("moquad", "moquad", "main", "MoQuad: RAD positive, reversed intra negatives, mining, warm-up"),
    Row("mcpnet", "mcpnet", "main",
        "MCPNet: MIP + CIP, residual clips with their own BatchNorm; MIP's negative the clip played backwards, "
        "CIP with l1 (the small config)"),
    Row("mcpnet-paper", "mcpnet", "main", "MCPNet with the paper's pairs: MIP's negative at the other speed, "
        "CIP with it (the ablations' base)", PAPER_PAIRS),
)

MOQUAD_ABLATIONS = (
    # MoQuad Tab. 4: quadruple members
    Row("moquad-no-intra-neg", "moquad", "moquad_ablations", "Tab. 4: without N", _ab("moquad_tab4_no_intra_neg"),
        base="moquad", paper="worse"),
    Row("moquad-no-intra-neg-ad", "moquad", "moquad_ablations", "Tab. 4: without N̄",
        _ab("moquad_tab4_no_intra_neg_ad"), base="moquad", paper="worse"),
    Row("moquad-no-intra", "moquad", "moquad_ablations", "Tab. 4: anchor + RAD positive only (no N, N̄)",
        _ab("moquad_tab4_no_intra_neg", "moquad_tab4_no_intra_neg_ad"), base="moquad", paper="worse"),
    Row("moquad-no-positive-ad", "moquad", "moquad_ablations", "Tab. 4: positive without RAD",
        _ab("moquad_tab4_no_positive_ad"), base="moquad", paper="worse"),
    # Tab. 5: appearance and motion disturbance
    Row("moquad-rad-intra", "moquad", "moquad_ablations", "Tab. 5: RAD noise from the same video",
        _ab("moquad_tab5_rad_intra"), base="moquad", paper="worse"),
    Row("moquad-be", "moquad", "moquad_ablations", "Tab. 5: BE (a frame of the clip) instead of RAD",
        _ab("moquad_tab5_be"), base="moquad", paper="worse"),
    Row("moquad-speed", "moquad", "moquad_ablations",
        "Tab. 5: intra negatives sped up (the paper's op) instead of reversed",
        overrides=("pipeline_config.motion=speed",), base="moquad", paper="better"),
    Row("moquad-shuffle", "moquad", "moquad_ablations", "Tab. 5: intra negatives shuffled", _ab("moquad_tab5_shuffle"),
        base="moquad", paper="better"),
    # Tab. 6: mining and warm-up
    Row("moquad-no-mining", "moquad", "moquad_ablations", "Tab. 6: β = 0 (Eq. 1)", _ab("moquad_tab6_no_mining"),
        base="moquad", paper="worse"),
    Row("moquad-alpha1", "moquad", "moquad_ablations",
        "α = 1: the mined negatives weighted 1 is Eq. 1 (a check: the same as moquad-no-mining)",
        overrides=("method.alpha=1.0",), base="moquad", paper=""),
    Row("moquad-no-warmup", "moquad", "moquad_ablations", "Tab. 6: no appearance warm-up",
        _ab("moquad_tab6_no_warmup"), base="moquad", paper="worse"),
)

MCPNET_ABLATIONS = (
    # MCPNet Tab. 1: gap t; Tab. 2: branches and CIP speed; Tab. 3: the view
    Row("mcpnet-gap1", "mcpnet", "mcpnet_ablations", "Tab. 1: t = 1", _mcp("mcpnet_tab1_gap1"),
        base="mcpnet-paper", paper="worse"),
    Row("mcpnet-gap4", "mcpnet", "mcpnet_ablations", "Tab. 1: t = 4 (the paper's; the small config's is 2)",
        PAPER_PAIRS, overrides=("pipeline_config.gap=4",), base="mcpnet-paper", paper="better"),
    Row("mcpnet-cip-only", "mcpnet", "mcpnet_ablations", "Tab. 2: CIP only (α = 0)", _mcp("mcpnet_tab2_cip_only"),
        base="mcpnet-paper", paper="worse"),
    Row("mcpnet-mip-only", "mcpnet", "mcpnet_ablations", "Tab. 2: MIP only (α = 1)", _mcp("mcpnet_tab2_mip_only"),
        base="mcpnet-paper", paper="worse"),
    Row("mcpnet-cip-same", "mcpnet", "mcpnet_ablations", "Tab. 2: CIP at the same speed",
        _mcp("mcpnet_tab2_cip_same_speed"), base="mcpnet-paper", paper="worse"),
    Row("mcpnet-cip-random", "mcpnet", "mcpnet_ablations", "Tab. 2: CIP at a random speed",
        _mcp("mcpnet_tab2_cip_random_speed"), base="mcpnet-paper", paper="worse"),
    Row("mcpnet-residual", "mcpnet", "mcpnet_ablations",
        "Tab. 3: residual view (t = 1: the clips of mcpnet-gap1)", _mcp("mcpnet_tab3_residual"),
        base="mcpnet-paper", paper="worse"),
    Row("mcpnet-rgb", "mcpnet", "mcpnet_ablations", "Tab. 3: RGB view instead of residual", _mcp("mcpnet_tab3_rgb"),
        base="mcpnet-paper", paper=""),
)

DIAGNOSTICS = (
    # What the investigation switched: each against the main row it changes
    *[Row(f"{m}-no-jitter", m, "diagnostics", "no colour jitter or grayscale (the demo configs' setting)",
          overrides=("pipeline_config.clip.augment.jitter_prob=0.0",
                     "pipeline_config.clip.augment.grayscale_prob=0.0")) for m in ("simclr", "moquad", "mcpnet")],
    *[Row(f"{m}-sgd", m, "diagnostics", f"SGD lr {lr} (the demo configs' optimiser) instead of AdamW 1e-3",
          overrides=("optim.name=sgd", f"optim.lr={lr}")) for m, lr in (("simclr", 0.1), ("moquad", 0.1),
                                                                         ("mcpnet", 0.05))],
    Row("mcpnet-bn-joint", "mcpnet", "diagnostics", "RGB and residual clips in one BatchNorm batch",
        overrides=("method.residual_bn=joint",)),
    Row("mcpnet-bn-split", "mcpnet", "diagnostics", "separate batches through shared BatchNorm layers",
        overrides=("method.residual_bn=split",)),
    Row("mcpnet-tau0.2", "mcpnet", "diagnostics",
        "MCPNet's temperature 0.2 instead of the small config's (MIP's and CIP's)",
        overrides=("method.temperature=0.2",), base="mcpnet"),
    Row("mcpnet-alpha0.8", "mcpnet", "diagnostics", "α = 0.8 instead of 0.5: more weight on MIP (Eq. 5)",
        overrides=("method.alpha=0.8",)),
    Row("moquad-plain", "moquad", "diagnostics", "speed negatives, no warm-up, no mining",
        overrides=("pipeline_config.motion=speed", "method.appearance_warmup=0", "method.beta=0")),
    Row("moquad-window32", "moquad", "diagnostics", "clips drawn from 32-frame windows (further apart)",
        overrides=("pipeline_config.clip.window=32",)),
)



def _sweep(method: str, name: str, what: str, *overrides: str) -> Row:
    return Row(f"{method}-{name}", method, "sweeps", what, overrides=overrides, base=method)


SWEEPS = (
    # MCPNet's small config took 0.1 from this sweep (it had 0.07; 0.2 is a diagnostics row)
    *[_sweep("mcpnet", f"tau{t}", f"temperature {t} instead of 0.1", f"method.temperature={t}") for t in (0.07, 0.5)],
    *[_sweep("moquad", f"tau{t}", f"temperature {t} instead of 0.1", f"method.temperature={t}")
      for t in (0.07, 0.2, 0.5)],
    *[_sweep("moquad", f"rad{a}-{b}", f"RAD blend λ ~ U[{a}, {b}] instead of U[0.1, 0.5]",
             f"pipeline_config.appearance.rad_lambda=[{a}, {b}]") for a, b in ((0.0, 0.3), (0.3, 0.7))],
    *[_sweep(m, f"head{h}", f"projection head {h} → {d} instead of 256 → 64", f"method.proj_hidden_dim={h}",
             f"method.proj_dim={d}") for m in ("moquad", "mcpnet") for h, d in ((128, 32), (512, 128))],
    *[_sweep(m, f"lr{lr}", f"AdamW learning rate {lr} instead of 1e-3", f"optim.lr={lr}")
      for m in ("moquad", "mcpnet") for lr in ("3e-4", "3e-3")],
    *[Row(f"{m}-steps3600", m, "sweeps", "3600 steps instead of 1200 (is it still improving?)", base=m, steps=3600)
      for m in ("moquad", "mcpnet")],
    # Is the labelled reference still improving too? Its epochs follow the steps (supervised_epochs).
    *[Row(f"supervised-steps{n}", "supervised", "sweeps", f"the labelled reference with as many training clips as "
          f"{n} steps instead of 1200 (is the methods' target still rising?)", base="supervised", steps=n,
          evidence="what the methods' target is at their longer budgets: compare a method with the labelled "
                   "reference trained on as many clips")
      for n in (3600, 6000)],
    Row("moquad-steps6000", "moquad", "sweeps", "6000 steps instead of 1200 (does it stop improving?)",
        base="moquad", steps=6000),
)



def _finetune(start: str, labels: float, same_steps: bool = False, augment: str = "checkpoint") -> Row:
    share = f"{labels:.0%} of the labels" + (", as many steps as with all of them" if same_steps else "")
    suffix = f"-{round(100 * labels)}" + ("-steps" if same_steps else "")
    if augment == "papers":  # eval.py names these results <name>-papersaug too
        share += ("; the papers' fine-tuning augmentation (a crop of 30-100 % of the frame, no colour jitter or "
                  "grayscale) at the same clip size and normalisation")
        suffix += "-papersaug"
    name = f"finetune-{start or 'scratch'}{suffix}"
    if not start:
        return Row(name, "finetune", "finetuning", f"from scratch (the tiny network), {share}", labels=labels,
                   same_steps=same_steps, augment=augment)
    return Row(name, "finetune", "finetuning", f"from the {start} row's checkpoint of the same seed, {share}",
               base=f"finetune-scratch{suffix}", paper="better", pretrained=start, labels=labels,
               same_steps=same_steps, augment=augment)


# Twice: with the checkpoints' augmentation (colour jitter and grayscale), then with the papers' fine-tuning one.
FINETUNING = tuple(_finetune(start, labels, steps, augment) for augment in ("checkpoint", "papers")
                   for labels, steps in ((1.0, False), (0.1, False), (0.1, True))
                   for start in ("", "simclr", "moquad", "mcpnet"))

ROWS: Dict[str, Row] = {r.name: r for r in MAIN + MOQUAD_ABLATIONS + MCPNET_ABLATIONS + DIAGNOSTICS + SWEEPS
                        + FINETUNING}
GROUPS = ("main", "moquad_ablations", "mcpnet_ablations", "diagnostics", "sweeps", "finetuning")


def select(spec: Sequence[str]) -> List[Row]:
    """Rows by group or row name (``all`` = every row), in table order, without repeats."""
    names: List[str] = []
    for item in spec:
        for part in filter(None, item.split(",")):
            if part == "all":
                names += list(ROWS)
            elif part in GROUPS:
                names += [r.name for r in ROWS.values() if r.group == part]
            elif part in ROWS:
                names.append(part)
            else:
                raise SystemExit(f"fidelity: unknown row or group {part!r}; groups: {', '.join(GROUPS)}, all; "
                                 f"rows: see --list")
    wanted = set(names)
    return [r for r in ROWS.values() if r.name in wanted]
