"""A LightningDataModule wrapping make_iterator, and the model of own_model.py as a LightningModule.

    pip install "motionssl[lightning]"
    python examples/lightning_datamodule.py                   # the demo videos, unlabelled, on the CPU
    python examples/lightning_datamodule.py "my_clips/**/*.mp4" --steps 100

Lightning takes any iterable as a dataloader; the iterator shards itself by the trainer's rank, so Lightning's
distributed sampler has nothing to do. On GPUs: device=f"cuda:{self.trainer.local_rank}" and accelerator="gpu".
"""
import argparse
import os

import torch
import torch.nn.functional as F

try:
    import lightning as L
except ImportError:  # the standalone package: the same API
    import pytorch_lightning as L

from motionssl.pipelines import demo, make_iterator


class VideoDataModule(L.LightningDataModule):
    def __init__(self, data=None, batch_size=8):
        super().__init__()
        self.data, self.batch_size, self.loader = data, batch_size, None

    def prepare_data(self):  # once per machine, before the ranks set up
        if self.data is None:
            demo.generate()

    def setup(self, stage):
        data = self.data or os.path.join(demo.generate(), "videos", "**", "*.webm")  # a glob: every video, no labels
        self.loader = make_iterator("simclr", data, self.batch_size, num_workers=0, shard_id=self.trainer.global_rank,
                                    num_shards=self.trainer.world_size,
                                    config={"clip": {"frames": 8, "augment": {"size": [56, 56]}}})

    def train_dataloader(self):
        return self.loader

    def teardown(self, stage):
        if self.loader is not None:
            self.loader.close()


class TwinViews(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Conv3d(3, 16, 3, padding=1), torch.nn.ReLU(),
                                       torch.nn.AdaptiveAvgPool3d(1), torch.nn.Flatten(), torch.nn.Linear(16, 32))
        self.seen = []

    def training_step(self, batch, batch_idx):
        z1, z2 = (F.normalize(self.net(batch[view]), dim=1) for view in ("view1", "view2"))
        self.seen += batch["index"].tolist()
        return F.cross_entropy(z1 @ z2.T / 0.1, torch.arange(len(z1), device=z1.device))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("data", nargs="?", help="folder of videos, glob or list (default: the demo videos)")
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    model, videos = TwinViews(), VideoDataModule(args.data)
    trainer = L.Trainer(max_steps=args.steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, datamodule=videos)
    print(f"lightning trained {trainer.global_step} steps of my own model on videos {model.seen}")
