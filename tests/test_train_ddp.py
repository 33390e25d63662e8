"""Two data-parallel workers (CPU, gloo): every rank runs the same path at every step and
the parameters stay identical across ranks (single-path sampling + DDP with unused params)."""
import os

import pytest
import torch
import torch.distributed as td
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from lighttrack.config import load
from lighttrack.models import TrackSupernet
from lighttrack.train.common import Dist
from lighttrack.train.config import SupernetConfig
from lighttrack.train.tracking import train_supernet
from tests.test_train_frozen import _batches


def _worker(rank: int, port: int, out: str, sandwich: int) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    td.init_process_group("gloo", rank=rank, world_size=2)
    torch.manual_seed(0)
    model = TrackSupernet()
    cfg = load(SupernetConfig, "configs/supernet_micro.yaml",
               ["epochs=1", "backbone_freeze_epochs=0", "steps_per_epoch=3", "eval.num_paths=0", "run.log_every=1",
                f"sandwich={sandwich}"])
    data = _batches(3)[rank::2]  # each rank its own (different) pairs
    loader = torch.utils.data.DataLoader(data, batch_size=1)
    archs = []

    def report(m, s=None):
        if s is None and "arch" in m:
            got = [None, None]
            td.all_gather_object(got, m["arch"])  # every rank's arch string at this step
            archs.append(got)

    train_supernet(model, loader, cfg, report, Dist(rank, 2),
                   lambda m: DistributedDataParallel(m, find_unused_parameters=True))
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(2)]
    td.all_gather(gathered, flat)
    if rank == 0:
        torch.save({"archs": archs, "params": gathered, "init": torch.cat(
            [p.detach().flatten() for p in (torch.manual_seed(0), TrackSupernet())[1].parameters()])}, out)
    td.destroy_process_group()


@pytest.mark.parametrize("sandwich", [0, 2])
def test_two_ranks_same_path_and_same_params(tmp_path, sandwich):
    """Also under the sandwich rule: three forward/backward passes a step (the largest, two
    paths), each all-reduced, one optimiser step."""
    from devcluster.services import free_port
    out = str(tmp_path / "ddp.pt")
    mp.spawn(_worker, args=(free_port(), out, sandwich), nprocs=2, join=True)
    res = torch.load(out)
    assert len(res["archs"]) == 3
    for a0, a1 in res["archs"]:
        assert a0 == a1
    assert len({a for a, _ in res["archs"]}) > 1  # a new path each step
    p0, p1 = res["params"]
    assert torch.equal(p0, p1)
    assert not torch.equal(p0, res["init"])  # it did train
