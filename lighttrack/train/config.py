"""Typed configs of the training phases (1: backbone supernet, 2: tracking supernet,
4: retrain + fine-tune). Loaded with ``lighttrack.config.load(Cls, yaml, overrides)``.

The full-size YAML files in ``configs/`` carry the paper's values (docs/method.md §7-§11);
``*_tiny.yaml`` run on the embedded data set on a 2-core CPU in minutes,
``*_micro.yaml`` in seconds (CI smoke).
"""
from __future__ import annotations

from typing import Annotated, Literal
from dataclasses import dataclass, field

from lighttrack.arch import ArchError, resolve
from lighttrack.config import ConfigError, Count, Fraction, NonNegFloat, PosFloat, PosInt, Range, dotted
from lighttrack.data.check import check_image_folder_quick
from lighttrack.data.sampling import PairDataConfig  # tracking pair sources + crop processing
from lighttrack.tracker.params import check_tracker
from lighttrack.tracker.validation import Metric, check_validation

__all__ = [
    "OptimConfig", "ScheduleConfig", "RunConfig", "ClassModelConfig", "PretrainConfig",
    "TrackEvalConfig", "SupernetConfig", "RetrainStageConfig",
    "FinetuneStageConfig", "RetrainConfig",
]


@dataclass
class OptimConfig:
    name: Literal["sgd", "rmsprop", "adamw"] = "sgd"
    lr: PosFloat = 0.5              # peak (global) learning rate; the schedule scales it
    momentum: Fraction = 0.9
    weight_decay: NonNegFloat = 4e-5
    alpha: Fraction = 0.9           # RMSProp decay of the squared-gradient average
    eps: PosFloat = 1e-3            # RMSProp epsilon (TF-style, as EfficientNet)
    nesterov: bool = False


@dataclass
class ScheduleConfig:
    warmup_epochs: NonNegFloat = 0.0   # linear warm-up from warmup_start_lr to optim.lr
    warmup_start_lr: NonNegFloat = 0.0
    decay: Literal["linear", "log", "cosine", "constant"] = "linear"  # after warm-up: optim.lr -> final_lr
    final_lr: NonNegFloat = 0.0  # lr at the end of the last epoch (> 0 for log decay)

    def validate(self) -> None:
        if self.decay == "log" and self.final_lr <= 0:
            raise ConfigError(f"final_lr: {self.final_lr!r}; log decay needs final_lr > 0")


@dataclass
class RunConfig:
    """Execution settings shared by every phase (the Ray job reads the scaling ones)."""

    seed: Count = 0              # seeds the weights, the data order and the path sampler
    num_workers: PosInt = 1         # data-parallel training workers (Ray Train)
    use_gpu: Literal["auto", "true", "false"] = "auto"
    cpus_per_worker: PosInt = 1
    loader_workers: Count = 0      # DataLoader processes per training worker
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"            # auto (bf16 on GPUs that have it, else fp16; off on CPU) | bf16 | fp16 | off
    max_failures: Annotated[int, Range(ge=-1)] = 3  # worker losses survived by restarting from the last checkpoint (-1: any number)
    keep_checkpoints: PosInt = 2    # checkpoints kept by Ray Train (latest ones)
    log_every: PosInt = 10          # steps between per-step metric reports (each waits for the device)
    channels_last: bool = False     # NHWC weights: the layout Tensor Cores read without a transpose (CUDA)
    threads: Count = 0           # torch.set_num_threads per worker (0 = leave as is)


@dataclass
class ClassModelConfig:
    num_classes: Annotated[int, Range(ge=2)] = 1000
    image_size: Annotated[int, Range(ge=32)] = 224  # training crop side
    dropout: Fraction = 0.0         # before the classifier (phase 4 retrain: 0.2)


@dataclass
class PretrainConfig:
    """Phase 1: backbone supernet on ImageNet-layout data, single-path uniform sampling."""

    data_root: str = "data/imagenet"  # ImageNet folder layout: <root>/{train,val}/<class>/*.JPEG
    epochs: PosInt = 120
    batch_size: PosInt = 128        # per worker
    steps_per_epoch: Count = 0     # 0 = one pass over the training set
    model: ClassModelConfig = field(default_factory=ClassModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    # Train only the largest path (k7e6 everywhere) for these epochs, then let every smaller
    # candidate inherit from it (first channels, centre of the kernels; as Once-for-All's
    # progressive shrinking) and sample uniformly. 0 = the paper: uniform from the start.
    # For short runs: on the embedded set, 200 uniform steps from scratch stay at chance.
    largest_warmup_epochs: NonNegFloat = 0.0
    eval_paths: Count = 3          # random fixed paths whose top-1 is measured every epoch (+ the largest)
    eval_batches: Count = 0        # held-out batches per evaluation (0 = all)
    recalibrate_batches: Count = 4  # training batches to re-estimate BN of each fixed path before eval (0 = off)
    run: RunConfig = field(default_factory=RunConfig)

    def check_inputs(self, where: str = "") -> None:
        check_image_folder_quick(self.data_root, where=dotted(where, "data_root"))


@dataclass
class TrackEvalConfig:
    metric: Metric = "ao"  # ao (GOT-10k layout, one pass) | eao (VOT layout, re-initialised)
    root: str = "data/got10k"    # validation sequences: GOT-10k root (ao) or VOT sequences folder (eao)
    split: str = "val"  # (ao only)
    max_sequences: Count = 0       # 0 = all
    paths: list[str] = field(default_factory=list)  # fixed arch strings / presets; empty = `num_paths` random ones
    num_paths: Count = 2
    recalibrate_batches: Count = 4  # training pair batches to re-estimate BN per path (0 = off)
    every: PosInt = 1               # evaluate every N epochs (and always after the last)
    tracker: str = "vot2019"     # TrackerParams preset
    before_training: bool = True  # also evaluate the untrained paths once (the baseline to beat)

    def validate(self) -> None:
        check_tracker(self.tracker)
        for i, text in enumerate(self.paths):
            try:
                resolve(text)
            except ArchError as e:
                raise ConfigError(f"paths[{i}]: {text!r} is not an architecture: {e}") from None

    def check_inputs(self, where: str = "") -> None:
        if self.num_paths or self.paths:  # else no path is evaluated: the split is never read
            check_validation(self.metric, self.root, self.split, self.tracker, where)



@dataclass
class SupernetConfig:
    """Phase 2: tracking supernet on tracking pairs."""

    init: str = ""               # phase-1 result: MLflow run id or checkpoint path ("" = from scratch)
    # Output layers the supernet offers: "paper" (last 8 blocks, stride 16) or "wide" (also
    # stage 2's 40-channel outputs at stride 8, with their own neck; 12 positions as released).
    space: Literal["paper", "wide"] = "paper"
    epochs: PosInt = 30
    batch_size: PosInt = 32         # per worker (paper: 32 x 8 GPUs)
    steps_per_epoch: Count = 0     # 0 = pairs per epoch / (batch_size x workers)
    data: PairDataConfig = field(default_factory=PairDataConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=3e-2, weight_decay=1e-4))
    schedule: ScheduleConfig = field(default_factory=lambda: ScheduleConfig(
        warmup_epochs=5, warmup_start_lr=1e-2, decay="log", final_lr=1e-4))
    # As PretrainConfig: the largest architecture alone first, then every smaller head
    # candidate (and backbone candidate when `init` is empty) inherits from it. 0 = the paper.
    # Short runs need it: on the embedded set, 100 uniform steps left the cls loss at ln 2,
    # while one fixed path brought it to 0.40.
    largest_warmup_epochs: NonNegFloat = 0.0
    # The sandwich rule with in-place distillation (BigNAS, Once-for-All): each step trains
    # the largest architecture on the labels and `sandwich` uniform paths on the labels plus
    # `distill_weight` x a BCE towards the largest's score map (detached). 0 = the paper's
    # single path per step. After the largest warm-up, when there is one.
    sandwich: Count = 0
    distill_weight: NonNegFloat = 1.0
    backbone_freeze_epochs: Count = 10  # backbone weights AND its BN statistics are fixed for these epochs
    backbone_lr_mult: NonNegFloat = 0.1     # afterwards the backbone trains at this fraction of the global lr
    # max gradient norm (0 = off). The IoU loss pulls a too-short box out steeply and a
    # too-long one back only as ~1/length: unclipped, the first steps overshoot the ltrb
    # outputs to ~1000 px and the regression loss then rises (measured on the embedded set).
    grad_clip: NonNegFloat = 10.0
    eval: TrackEvalConfig = field(default_factory=TrackEvalConfig)
    run: RunConfig = field(default_factory=RunConfig)


@dataclass
class RetrainStageConfig:
    """Phase 4a: retrain the found backbone on ImageNet (EfficientNet-like recipe)."""

    enabled: bool = True
    data_root: str = "data/imagenet"
    init: Literal["scratch", "supernet"] = "scratch"        # scratch | supernet (start from the phase-1 weights named in best_arch.json)
    epochs: PosInt = 500
    batch_size: PosInt = 128
    steps_per_epoch: Count = 0
    model: ClassModelConfig = field(default_factory=lambda: ClassModelConfig(dropout=0.2))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(
        name="rmsprop", lr=0.064, momentum=0.9, alpha=0.9, weight_decay=1e-5))
    schedule: ScheduleConfig = field(default_factory=lambda: ScheduleConfig(
        warmup_epochs=3, warmup_start_lr=0.0, decay="cosine", final_lr=0.0))
    autoaugment: bool = True     # torchvision AutoAugment (ImageNet policy)
    ema_decay: Fraction = 0.9999    # exponential moving average of the weights (0 = off); EMA weights go on
    eval_batches: Count = 0

    def check_inputs(self, where: str = "") -> None:
        if self.enabled:
            check_image_folder_quick(self.data_root, where=dotted(where, "data_root"))


@dataclass
class FinetuneStageConfig:
    """Phase 4b: fine-tune backbone + head of the found architecture on tracking pairs."""

    head_init: Literal["scratch", "supernet"] = "scratch"   # scratch | supernet (head/neck weights from the phase-2 supernet)
    epochs: PosInt = 50
    batch_size: PosInt = 32
    steps_per_epoch: Count = 0
    data: PairDataConfig = field(default_factory=PairDataConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-1, weight_decay=1e-4))
    schedule: ScheduleConfig = field(default_factory=lambda: ScheduleConfig(
        warmup_epochs=5, warmup_start_lr=2e-2, decay="log", final_lr=2e-4))
    backbone_freeze_epochs: Count = 0
    backbone_lr_mult: NonNegFloat = 0.1
    grad_clip: NonNegFloat = 10.0  # see SupernetConfig
    eval: TrackEvalConfig = field(default_factory=TrackEvalConfig)


@dataclass
class RetrainConfig:
    """Phase 4: from a search result (best_arch.json) to a trained static tracker."""

    arch: str = ""               # search result: MLflow run id, path to best_arch.json, or an arch string
    supernet: str = ""           # phase-2 run id / checkpoint (overrides the one named in best_arch.json)
    retrain: RetrainStageConfig = field(default_factory=RetrainStageConfig)
    finetune: FinetuneStageConfig = field(default_factory=FinetuneStageConfig)
    run: RunConfig = field(default_factory=RunConfig)
