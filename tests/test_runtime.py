"""motionssl.runtime: device choice, signals, and the collective decisions two gloo ranks take together."""
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from motionssl import runtime

WORLD = 2


def _worker(rank: int, init_file: str, folder: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        rt = runtime.Runtime("cpu", torch.device("cpu"), rank, WORLD, rank)
        # A non-finite loss on one rank stops both at the same step instead of hanging the other.
        assert runtime.any_rank(rank == 1, rt) is True
        assert runtime.any_rank(False, rt) is False

        def write_or_read():
            path = os.path.join(folder, "data.txt")
            if rank == 0:
                with open(path, "w") as f:
                    f.write("written by rank 0")
            with open(path) as f:  # the other rank reads what rank 0 wrote, after it finished
                return f.read()

        assert runtime.rank_zero_first(rt, write_or_read) == "written by rank 0"
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ranks_decide_together_and_rank_zero_goes_first(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)


def test_single_process_runtime():
    rt = runtime.start("cpu")
    assert (rt.kind, rt.rank, rt.world, rt.distributed, rt.main) == ("cpu", 0, 1, False, True)
    assert runtime.any_rank(True, rt) and not runtime.any_rank(False, rt)
    assert runtime.rank_zero_first(rt, lambda: 7) == 7
    with pytest.raises(ValueError, match="device='tpu'"):
        runtime.resolve_device("tpu")
    assert not torch.cuda.is_initialized()  # device=cpu never asks CUDA


def test_termination_waits_for_the_step_and_ignores_a_forwarded_repeat(monkeypatch):
    import signal

    now = [100.0]
    monkeypatch.setattr(runtime.time, "monotonic", lambda: now[0])
    with runtime.Termination(grace=10.0) as term, term.deferred():  # inside the training loop
        assert not term.requested
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)  # torchrun forwarding the same signal: ignored
        assert term.requested and term.signal == signal.SIGTERM
        now[0] += 11.0
        with pytest.raises(SystemExit) as exit_:  # a signal after the grace period: at once
            os.kill(os.getpid(), signal.SIGINT)
        assert exit_.value.code == 128 + signal.SIGINT
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored


def test_outside_the_training_steps_a_signal_stops_at_once():
    """Setting up, or the retrieval after training (the checkpoint is written): nothing to wait for."""
    import signal

    with runtime.Termination() as term:
        with pytest.raises(SystemExit) as exit_:
            os.kill(os.getpid(), signal.SIGTERM)
        assert exit_.value.code == 143 and term.signal == signal.SIGTERM


def test_workers_started_in_the_quiet_block_ignore_terminal_signals():
    import signal
    import subprocess
    import sys
    import time

    from motionssl.pipelines.workers import signals_ignored

    # Handlers of our own before the block, so that restoring them is checked whatever this
    # process inherited (a shell starts a background job with SIGINT already ignored).
    def on_int(signum, frame):
        pass

    def on_term(signum, frame):
        pass

    inherited = {s: signal.signal(s, h) for s, h in ((signal.SIGINT, on_int), (signal.SIGTERM, on_term))}
    try:
        with signals_ignored():
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            time.sleep(0.5)
            child.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            assert child.poll() is None  # ignored: the training process decides when its workers stop
        finally:
            child.kill()
            child.wait()
        assert signal.getsignal(signal.SIGINT) is on_int
        assert signal.getsignal(signal.SIGTERM) is on_term
    finally:
        for s, h in inherited.items():
            signal.signal(s, h)
