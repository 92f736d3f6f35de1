"""Omni-condition training: stage 0 (VAE), then stages 1-3 of the transformer.

One script for CPU, one GPU, or many through ``torchrun`` (DDP; FSDP for the large presets),
detected from the launch environment. bf16 autocast on GPU, activation checkpointing, EMA, gradient
clipping, a learning rate that is a pure function of the step. The run directory resumes exactly:
model, EMA, optimizer, step, data position and RNG are saved together (safetensors + JSON, no
pickle), so N steps equal N/2 steps, stop, resume, N/2 steps.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from models.conditions.audio import MelFeatures
from models.conditions.text import tokenize
from models.config import latent_frames
from models.dit import Conditions
from models.errors import UserError
from models.flow import flow_loss, interpolate, sample_timesteps, shift_for_tokens
from models.keypoints import LIP_CHANNELS, render_heatmaps
from models.model import OmniHuman
from models.threads import cpu_has_native_bf16
from models.training.latent_cache import lip_pixels
from models.training.plan import draw_conditions
from models.training.recipe import Recipe, Stage, lr_at

MOTION_FRAMES = 5
LIP_DECODE_CELLS = 6  # latent cells per side decoded for the lip-pixel loss (48 px at toon-s: every lip box fits)


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed() -> DistInfo:
    """DDP when launched by torchrun (RANK/WORLD_SIZE set), else a single process."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return DistInfo()
    import torch.distributed as dist

    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    info = DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    if torch.cuda.is_available():
        torch.cuda.set_device(info.local_rank)
    return info


def close_distributed(wait: bool = True) -> None:
    """Destroy the process group ``init_distributed`` made (a gloo group left to interpreter shutdown
    can abort the process with "terminate called without an active exception"). With ``wait`` (a run
    that ended normally) the ranks first meet at a barrier, so none tears down its connections while
    another still uses them (rank 0 writes the last checkpoint and the export after the final
    collective). After an error, no barrier: the other ranks may never reach it."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


class EMA:
    """Exponential moving average of a module's floating parameters (kept in float32)."""

    def __init__(self, module: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = {k: v.detach().float().clone() for k, v in module.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, module: torch.nn.Module, step: int) -> None:
        # Warm up the decay so early weights do not linger (decay 0.1 at step 0).
        d = min(self.decay, (1 + max(step, 0)) / (10 + max(step, 0)))
        for k, v in module.state_dict().items():
            if k in self.shadow:
                self.shadow[k].mul_(d).add_(v.detach().float(), alpha=1 - d)

    def copy_to(self, module: torch.nn.Module) -> None:
        state = module.state_dict()
        module.load_state_dict({**state, **{k: v.to(state[k].dtype) for k, v in self.shadow.items()}})


class TransformerStep(torch.nn.Module):
    """Conditions and the transformer in one forward, so DDP sees every trained parameter used."""

    def __init__(self, transformer: torch.nn.Module) -> None:
        super().__init__()
        self.transformer = transformer

    def forward(self, xt: torch.Tensor, t: torch.Tensor, cond: Conditions, frames: int,
                read_lips: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        v = self.transformer(xt, t, self.transformer.prepare(cond, frames))
        if not read_lips:
            return v
        return v, self.transformer.read_lips(cond.audio)


class Trainer:
    def __init__(self, recipe: Recipe, data: list[str], run_dir: str | os.PathLike, device: str = "auto",
                 resume: bool = False, log: Callable[[str], None] | None = None, num_workers: int | None = None,
                 max_steps: int | None = None, max_minutes: float | None = None,
                 init: str | os.PathLike | None = None) -> None:
        self.recipe = recipe
        self.data = [str(d) for d in data]
        self.run_dir = Path(run_dir)
        self.dist = init_distributed()
        if device == "auto":
            device = f"cuda:{self.dist.local_rank}" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        # bf16 autocast: always on GPUs; on CPUs only when asked (CPUs with AVX512-BF16 or AMX run
        # the transformer's matmuls several times faster in bf16; older ones emulate it slowly).
        self.amp = recipe.precision == "bf16" or (recipe.precision == "auto" and self.device.type == "cuda")
        self.log = log or (lambda s: print(s, file=sys.stderr, flush=True))
        if self.amp and self.device.type == "cpu" and not cpu_has_native_bf16():
            self.amp = False
            self.log(f"{recipe.name}: this CPU has no bfloat16 instructions (AVX512-BF16 or AMX), where bf16 "
                     "autocast is emulated and tens of times slower: training in float32")
        if self.device.type == "cuda":
            # Fixed window shapes: let cuDNN pick the fastest 3D convolutions (the VAE), and TF32 for
            # what runs outside bf16 autocast.
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.num_workers = recipe.num_workers if num_workers is None else num_workers
        self.max_steps = max_steps
        self.max_seconds = None if max_minutes is None else max_minutes * 60.0
        self.config = recipe.model_config()
        torch.manual_seed(recipe.seed)
        self.model = OmniHuman(self.config).to(self.device)
        if self.config.name in ("base", "large"):
            self.model.transformer.gradient_checkpointing = True
        self.ema = EMA(self.model.transformer, recipe.ema_decay)
        # The EMA's warm-up counts transformer steps, not the VAE stages' steps before them.
        self.first_dit_step = 0
        for s in recipe.stages:
            if s.kind == "dit" and s.steps:
                break
            self.first_dit_step += s.steps
        self.gen = torch.Generator().manual_seed(recipe.seed + 1000 * self.dist.rank)
        self._still_memo: dict[tuple[int, bytes], torch.Tensor] = {}  # see _cached_still
        self.step = 0
        self.data_state: dict | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.opt_stage = -1
        self.mel = MelFeatures(self.config.cond)
        self.history: dict[str, list[float]] = defaultdict(list)
        self.init: str | None = None  # the model folder a fine-tuning run started from
        if init is not None and resume:
            raise UserError("--init starts a new run from a model's weights; --resume continues the run in --out "
                            "(its checkpoint already holds the weights): pass one of them")
        if resume:
            if not (self.run_dir / "checkpoint" / "state.json").is_file():
                raise UserError(f"{self.run_dir}: nothing to resume (no checkpoint/state.json)")
            self.load_checkpoint()
        elif (self.run_dir / "checkpoint" / "state.json").is_file():
            raise UserError(f"{self.run_dir}: already holds a run; pass --resume to continue it or choose a new --out")
        if init is not None:
            self.init_from(init)

    def init_from(self, folder: str | os.PathLike) -> None:
        """Start from a trained model folder's weights (fine-tuning: e.g. the bundled model on more
        data or a longer recipe). Its architecture must be the recipe preset's, or differ only by fewer
        latent channels: then it is grown (models/training/grow.py)."""
        from models.checkpoint import load_model
        from models.training.grow import grow_latent_state, growable, switch_on_state, switchable

        src = load_model(folder)
        if growable(src.config, self.config):
            # Same architecture but a larger latent: grow it (the new channels start unused).
            state = grow_latent_state(src.state_dict(), src.config, self.config, self.model.state_dict(),
                                      seed=self.recipe.seed)
            self.model.load_state_dict(state)
            if self.dist.main:
                self.log(f"grew the latent of {folder} from {src.config.vae.latent_channels} to "
                         f"{self.config.vae.latent_channels} channels (the new ones start unused)")
        elif switchable(src.config, self.config):
            # The same transformer with new paths switched on (e.g. dit.ref_concat): they start unused.
            self.model.load_state_dict(switch_on_state(src.state_dict(), self.model.state_dict()))
            if self.dist.main:
                turned = [k for k, v in self.config.to_dict()["dit"].items() if v != src.config.to_dict()["dit"].get(k)]
                self.log(f"took every weight of {folder}; switched on dit.{', dit.'.join(turned)} "
                         "(new paths start unused; a new flow space is learnt by the fine-tune)")
        elif self._same(src.config, ("vae", "cond")) and not self._same(src.config, ("dit",)):
            # A new transformer over a trained VAE (the learnability ladder: one VAE, several transformers).
            self.model.vae.load_state_dict(src.vae.state_dict())
            if self.dist.main:
                self.log(f"took the VAE of {folder}; the transformer ({self.config.name}'s) starts fresh")
        else:
            mine, theirs = self.config.to_dict(), src.config.to_dict()
            for part in ("vae", "dit", "cond"):
                for key in mine[part]:
                    if mine[part][key] != theirs[part].get(key):
                        raise UserError(f"{folder}: the model's {part}.{key} is {theirs[part].get(key)!r} where the "
                                        f"recipe's preset '{self.config.name}' has {mine[part][key]!r}; --init needs "
                                        "a model of the recipe's preset (or one that differs only by fewer latent "
                                        "channels, which is grown)")
            self.model.load_state_dict(src.state_dict())
        self.ema = EMA(self.model.transformer, self.recipe.ema_decay)
        self.init = str(folder)
        if self.dist.main:
            self.log(f"initialised from {folder} ({src.config.name})")

    def _same(self, other, parts: tuple[str, ...]) -> bool:
        mine, theirs = self.config.to_dict(), other.to_dict()
        return all(mine[p] == theirs[p] for p in parts)

    # -- optimiser per stage ------------------------------------------------------------------

    def _stage_params(self, stage: Stage) -> list[torch.nn.Parameter]:
        m = self.model.vae if stage.kind == "vae" else self.model.transformer
        if stage.kind == "vae" and stage.decoder_only:
            m = self.model.vae.decoder
        return [p for p in m.parameters() if p.requires_grad]

    def _param_groups(self, stage: Stage) -> list[dict]:
        """The stage's parameters as optimiser groups, each with its ``lr_mult`` (the audio path's
        own group when the stage trains it faster)."""
        params = self._stage_params(stage)
        if stage.kind != "dit" or stage.audio_lr_mult == 1.0:
            return [{"params": params, "lr_mult": 1.0}]
        audio_ids = {id(p) for p in self.model.transformer.audio_path_parameters()}
        audio = [p for p in params if id(p) in audio_ids]
        rest = [p for p in params if id(p) not in audio_ids]
        return [{"params": rest, "lr_mult": 1.0}, {"params": audio, "lr_mult": stage.audio_lr_mult}]

    def _ensure_optimizer(self, stage_idx: int, stage: Stage) -> None:
        if self.opt_stage == stage_idx and self.optimizer is not None:
            return
        self.optimizer = torch.optim.AdamW(self._param_groups(stage), lr=stage.lr, betas=(0.9, 0.99),
                                           weight_decay=self.recipe.weight_decay, eps=1e-8)
        self.opt_stage = stage_idx

    # -- data ---------------------------------------------------------------------------------

    def _loader(self, stage_idx: int, stage: Stage):
        from torch.utils.data import DataLoader

        from models.data.dataset import WindowDataset

        seg = stage.segment_frames or self.config.sampling.segment_frames
        if stage.kind == "dit" and stage.cache_windows:
            return self._cached_windows(stage_idx, stage, seg)
        frames = seg + (MOTION_FRAMES if stage.kind == "dit" and stage.motion_prob > 0 else 0)
        ds = WindowDataset(self.data, num_frames=frames, batch_size=stage.batch_size,
                           seed=self.recipe.seed + 17 * stage_idx, rank=self.dist.rank,
                           world_size=self.dist.world_size)
        if self.data_state and self.data_state.get("stage") == stage_idx:
            ds.load_state_dict(self.data_state["dataset"])
        return DataLoader(ds, batch_size=None, num_workers=self.num_workers,
                          persistent_workers=False, pin_memory=self.device.type == "cuda")

    def _cached_windows(self, stage_idx: int, stage: Stage, seg: int):
        """The stage's windows from the run's latent cache, built on first use (see ``latent_cache``)."""
        from models.training import latent_cache as lc

        key = lc.cache_key(self.data, seg, stage.cache_windows, self.recipe.seed,
                           lc.vae_fingerprint(self.model.vae))
        path = self.run_dir / "latents" / f"{key}-rank{self.dist.rank}.pt"
        if path.is_file():
            buckets = lc.load_cache(path)
        else:
            self.log(f"latent cache: encoding {stage.cache_windows} windows of {MOTION_FRAMES}+{seg} frames "
                     f"with the frozen VAE (once; {path})")
            self.model.vae.eval()
            buckets = lc.build_cache(
                self.data, seg, MOTION_FRAMES, stage.cache_windows // self.dist.world_size, self.recipe.seed,
                lambda batch: self.encode_cache_batch(batch, seg), rank=self.dist.rank,
                world_size=self.dist.world_size, log=self.log if self.dist.main else (lambda s: None),
                # A GPU encodes a window in well under the time one process takes to decode its
                # frames: loader processes feed it, in batches the size of the stage's.
                batch_size=stage.batch_size if self.device.type == "cuda" else 4,
                num_workers=self.num_workers if self.device.type == "cuda" else 0)
            lc.save_cache(buckets, path)
        windows = lc.LatentWindows(buckets, stage.batch_size, seed=self.recipe.seed + 17 * stage_idx)
        if self.data_state and self.data_state.get("stage") == stage_idx:
            windows.load_state_dict(self.data_state["dataset"])
        return windows

    # -- one step -------------------------------------------------------------------------------

    def vae_step(self, stage: Stage, batch: dict) -> dict[str, float]:
        video = batch["video"].to(self.device)
        seg = stage.segment_frames or self.config.sampling.segment_frames
        video = video[:, :, :seg]
        keypoints = batch["keypoints"][:, :seg].float()
        if stage.crop:
            video, keypoints = self._crop(video, keypoints, stage.crop, stage.face_crops)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            if stage.decoder_only:
                # The latents stay what the transformer learnt: the encoder is frozen.
                with torch.no_grad():
                    mean, logvar = self.model.vae.encode_moments(video)
                    z = mean + torch.randn(mean.shape, generator=self.gen).to(mean) * (0.5 * logvar).exp()
                rec = self._vae_module(z, None)
            else:
                rec, mean, logvar = self._vae_module(video)
        rec = rec.float()
        err = rec - video
        mouth_weight = self.recipe.mouth_weight_of(stage)
        wmap: torch.Tensor | float = 1.0
        if mouth_weight > 0:
            # Pixels around the lips weigh 1 + mouth_weight; normalised so the loss keeps its scale.
            wmap = 1.0 + mouth_weight * lip_pixels(keypoints, *video.shape[-2:]).to(err.device)[:, None].float()
            wmap = wmap / wmap.mean()
        l1 = (err.abs() * wmap).mean()
        mse_w = (err.pow(2) * wmap).mean()
        kl = 0.5 * (mean.float().pow(2) + logvar.float().exp() - 1 - logvar.float()).mean()
        loss = l1 + mse_w + self.recipe.vae_kl_weight * kl
        loss.backward()
        mse = float(err.detach().pow(2).mean())
        return {"loss": float(loss.detach()), "l1": float(l1.detach()), "kl": float(kl.detach()),
                "psnr": -10 * math.log10(max(mse / 4.0, 1e-10))}

    def _crop(self, video: torch.Tensor, keypoints: torch.Tensor, size: int,
              face_share: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """One ``size`` x ``size`` crop per sample, and the keypoints in the crop's coordinates.

        The VAE is convolutional: small crops teach it the same edges, eyes and mouths for a
        fraction of the compute of whole frames. A ``face_share`` of the crops is centred on the
        lips of the window's first frame, so the small details that carry speech are seen far more
        often than their share of the frame.
        """
        from models.keypoints import FACE_START

        b = video.shape[0]
        h, w = video.shape[-2:]
        lips = keypoints[:, 0, FACE_START : FACE_START + 10]
        ys, xs = self._crop_offsets(h, w, size, lips[..., 1].mean(-1) * h, lips[..., 0].mean(-1) * w,
                                    (lips[..., 2] > 0.3).all(-1), face_share)
        crops = _crop_each(video, ys, xs, size)
        ch, cw = crops.shape[-2:]
        kp = keypoints.clone()
        kp[..., 0] = (kp[..., 0] * w - torch.tensor(xs, dtype=kp.dtype).view(b, 1, 1)) / cw
        kp[..., 1] = (kp[..., 1] * h - torch.tensor(ys, dtype=kp.dtype).view(b, 1, 1)) / ch
        return crops, kp

    def _latent_crop_offsets(self, cells: torch.Tensor, size: int, face_share: float) -> tuple[list[int], list[int]]:
        """Top-left latent cell of one ``size`` x ``size`` crop per sample; a ``face_share`` of them
        centred on the sample's lip cells ``(B, F, h, w)`` (their centroid over all frames)."""
        h, w = cells.shape[-2:]
        cy, cx, has_lips = _lip_centroid(cells)
        return self._crop_offsets(h, w, size, cy, cx, has_lips, face_share)

    def _crop_offsets(self, h: int, w: int, size: int, centre_y: torch.Tensor, centre_x: torch.Tensor,
                      has_face: torch.Tensor, face_share: float) -> tuple[list[int], list[int]]:
        """Top-left corners of one ``size`` x ``size`` crop per sample in an ``h`` x ``w`` grid: a
        ``face_share`` of them centred on (centre_y, centre_x) jittered by up to a quarter crop, the
        others (and samples without a face) anywhere."""
        b = len(has_face)
        ch, cw = min(size, h), min(size, w)
        ys = torch.randint(0, h - ch + 1, (b,), generator=self.gen)
        xs = torch.randint(0, w - cw + 1, (b,), generator=self.gen)
        on_face = torch.rand(b, generator=self.gen) < face_share
        jitter = (torch.rand(b, 2, generator=self.gen) - 0.5) * (0.5 * size)
        face = on_face & has_face
        ys = torch.where(face, (centre_y + jitter[:, 1] - ch / 2).round().long().clamp(0, h - ch), ys)
        xs = torch.where(face, (centre_x + jitter[:, 0] - cw / 2).round().long().clamp(0, w - cw), xs)
        return ys.tolist(), xs.tolist()

    @torch.no_grad()
    def encode_windows(self, batch: dict, seg: int, offset: int, motion: bool) -> dict[str, torch.Tensor | None]:
        """The frozen VAE's latents of a loader batch: target frames ``offset .. offset + seg``, the
        reference frame, and (``motion``) the ``MOTION_FRAMES`` before the target."""
        vae = self.model.vae
        dev = self.device
        video = batch["video"].to(dev, non_blocking=True)  # (B, 3, T, H, W)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=self.amp):
            x0 = vae.encode(video[:, :, offset : offset + seg]).float()
            ref = vae.encode(batch["reference"].to(dev)[:, :, None]).float()
            mot = vae.encode(video[:, :, offset - MOTION_FRAMES : offset]).float() if motion else None
        return {"x0": x0, "ref": ref, "motion": mot}

    def window_mel(self, batch: dict, seg: int, offset: int) -> torch.Tensor:
        """Log-mel features of the target frames ``(B, seg, D)`` (computed over the whole window)."""
        frames = batch["video"].shape[2]
        feats = [self.mel(a.numpy(), num_frames=frames)[offset : offset + seg] for a in batch["audio"]]
        return torch.stack(feats)

    def encode_cache_batch(self, batch: dict, seg: int) -> dict[str, torch.Tensor]:
        """Everything a cached window keeps (see ``latent_cache``), on the CPU."""
        from models.training.latent_cache import mouth_cells

        lat = self.encode_windows(batch, seg, MOTION_FRAMES, motion=True)
        kp = batch["keypoints"][:, MOTION_FRAMES : MOTION_FRAMES + seg]
        h, w = batch["video"].shape[-2:]
        lh, lw = lat["x0"].shape[-2:]
        heat = render_heatmaps(kp.flatten(0, 1), h, w, sigma=self.config.cond.heatmap_sigma, device=self.device)
        heat = heat.unflatten(1, (kp.shape[0], seg)).transpose(0, 1)  # (B, P, T, H, W)
        return {
            "x0": lat["x0"].half().cpu(), "motion": lat["motion"].half().cpu(), "ref": lat["ref"].half().cpu(),
            "mel": self.window_mel(batch, seg, MOTION_FRAMES).half(),
            "heat": heat.mul(255).round().to(torch.uint8).cpu(),
            "mouth": mouth_cells(kp, lh, lw),
            "lips": batch["mouth"][:, MOTION_FRAMES : MOTION_FRAMES + seg].half(),
            "has_lips": batch["has_mouth"].bool(),
        }

    def _cached_still(self, refs: torch.Tensor, seg: int) -> torch.Tensor:
        """``OmniHuman.still_latents`` of cached reference latents ``(B, C, 1, h, w)``, remembered per
        window: a cached reference never changes, and decoding and re-encoding it is most of a CPU
        step. Each is computed alone, so the result does not depend on the batch it first came in
        (a resumed run gets the same numbers)."""
        import hashlib

        out = []
        for r in refs:
            key = (seg, hashlib.blake2b(r.contiguous().numpy().tobytes(), digest_size=16).digest())
            hit = self._still_memo.get(key)
            if hit is None:
                with torch.no_grad():
                    hit = self.model.still_latents(r[None].to(self.device).float(), seg).float().cpu()[0]
                self._still_memo[key] = hit
            out.append(hit)
        return torch.stack(out)

    def dit_step(self, stage: Stage, batch: dict) -> dict[str, float]:
        from models.training.latent_cache import mouth_cells

        model = self.model
        tr = model.transformer
        dev = self.device
        cached = "x0" in batch
        b = len(batch["caption"])
        seg = stage.segment_frames or self.config.sampling.segment_frames
        use_motion = stage.motion_prob > 0 and float(torch.rand(1, generator=self.gen)) < stage.motion_prob
        offset = MOTION_FRAMES if stage.motion_prob > 0 else 0
        draw = draw_conditions(stage, batch["audio_ok"], batch["pose_ok"],
                               torch.tensor([bool(c.strip()) for c in batch["caption"]]), self.gen)
        if cached:
            x0 = batch["x0"].to(dev).float()
            ref = batch["ref"].to(dev).float()
            motion = batch["motion"].to(dev).float() if use_motion else None
        else:
            lat = self.encode_windows(batch, seg, offset, use_motion)
            x0, ref, motion = lat["x0"], lat["ref"], lat["motion"]
        if motion is not None and stage.motion_anchor > 0:
            # Before dropping the reference: generation anchors toward the user's picture always.
            if cached:
                motion_still = self._cached_still(batch["ref"], MOTION_FRAMES).to(dev)
            else:
                with torch.no_grad():
                    motion_still = model.still_latents(ref, MOTION_FRAMES).float()
            motion = anchored_motion(motion, motion_still, stage.motion_anchor, self.gen)
        ref = ref * draw.reference.to(dev).view(b, 1, 1, 1, 1).float()
        n_lat = latent_frames(seg)
        still = None
        if model.uses_still:  # the reference as a still video (Conditions.still); a dropped one stays zero
            if cached:
                still = self._cached_still(batch["ref"], seg).to(dev)
            else:
                with torch.no_grad():
                    still = model.still_latents(ref, seg).float()
            still = still * draw.reference.to(dev).view(b, 1, 1, 1, 1).float()
        lh, lw = x0.shape[-2:]
        mouth_weight = self.recipe.mouth_weight_of(stage)
        cells = None
        if mouth_weight > 0 or stage.crop or stage.lip_pixel_weight > 0:
            cells = batch["mouth"] if cached else mouth_cells(batch["keypoints"][:, offset : offset + seg], lh, lw)
        audio = None
        if draw.audio.any():
            audio = (batch["mel"].float() if cached else self.window_mel(batch, seg, offset)).to(dev)
        pose = None
        if draw.pose.any():
            keep = draw.pose.nonzero().flatten()
            if cached:
                h, w = batch["heat"].shape[-2:]
                pose = torch.zeros(b, tr.cfg.pose_in_channels, seg, h, w, device=dev)
                pose[keep.to(dev)] = batch["heat"][keep].to(dev).float() / 255.0
            else:
                h, w = batch["video"].shape[-2:]
                kp = batch["keypoints"][:, offset : offset + seg]
                # One call for every pose-bearing sample: (n * T, K, 3) -> (C, n * T, H, W).
                maps = render_heatmaps(kp[keep].flatten(0, 1), h, w, sigma=self.config.cond.heatmap_sigma,
                                       device=dev)
                pose = torch.zeros(b, tr.cfg.pose_in_channels, seg, h, w, device=dev)
                pose[keep.to(dev)] = maps.unflatten(1, (len(keep), seg)).transpose(0, 1)
        if pose is not None:
            # The mouth belongs to the audio: no lip contours in the pose maps of samples that hear it,
            # nor in half of those that do not (generation's unguided branch: pose without lips or audio).
            no_lips = draw.audio | (torch.rand(b, generator=self.gen) < 0.5)
            if no_lips.any():
                rows = no_lips.nonzero().flatten().to(dev)
                pose[rows[:, None], torch.tensor(LIP_CHANNELS, device=dev)[None, :]] = 0.0
        size = stage.crop // self.config.vae.spatial_factor
        if stage.crop and (size < lh or size < lw):
            ys, xs = self._latent_crop_offsets(cells, size, stage.face_crops)
            x0, ref, cells = (_crop_each(v, ys, xs, size) for v in (x0, ref, cells))
            still = _crop_each(still, ys, xs, size) if still is not None else None
            motion = _crop_each(motion, ys, xs, size) if motion is not None else None
            if pose is not None:
                f = self.config.vae.spatial_factor
                pose = _crop_each(pose, [y * f for y in ys], [x * f for x in xs], size * f)
            lh, lw = x0.shape[-2:]
        if motion is not None and stage.motion_noise > 0:
            motion = noisy_motion(motion, stage.motion_noise, self.gen)
        tokens = mask = None
        if draw.text.any():
            tokens, mask = tokenize(list(batch["caption"]), tr.cfg.text_max_len)
            tokens, mask = tokens.to(dev), mask.to(dev)
        cond = Conditions(reference=ref, motion=motion, text_tokens=tokens, text_mask=mask, audio=audio, pose=pose,
                          text_keep=draw.text.to(dev), audio_keep=draw.audio.to(dev), pose_keep=draw.pose.to(dev),
                          still=still)
        ps = tr.cfg.patch_size
        n_tokens = (n_lat + 1 + (2 if motion is not None else 0)) * (lh // ps) * (lw // ps)
        t = sample_timesteps(b, shift_for_tokens(n_tokens), generator=self.gen).to(dev)
        # The flow's space (DiTConfig.ref_residual: the difference from the reference); ``base`` takes
        # it back to latents for the losses that decode.
        flow_ref = still if still is not None else ref
        base = x0 - tr.to_flow(x0, flow_ref)
        x0 = tr.to_flow(x0, flow_ref)
        noise = torch.randn(x0.shape, generator=self.gen).to(dev)
        xt = interpolate(x0, noise, t)
        # The lip-reading head (DiTConfig.mouth_head): the mouth parameters of the samples that hear
        # their own audio and know their mouth (synthetic clips), from the audio features alone.
        lip_rows = None
        if stage.audio_mouth_weight > 0 and audio is not None:
            has = batch["has_lips"] if cached else batch["has_mouth"]
            lip_rows = (draw.audio & has.bool().cpu()).nonzero().flatten()
            if len(lip_rows) == 0:
                lip_rows = None
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=self.amp):
            pred = self._dit_forward(xt, t, cond, n_lat, read_lips=lip_rows is not None)
        lips_loss = None
        if lip_rows is not None:
            pred, lips_hat = pred
            target = (batch["lips"] if cached else batch["mouth"][:, offset : offset + seg]).float()
            rows = lip_rows.to(dev)
            # Parameters in [0, 1] with spreads of 0.15-0.3: errors in units of 0.25.
            lips_loss = ((lips_hat[rows].float() - target.to(dev)[rows]) / 0.25).pow(2).mean()
        weight_map = None
        if mouth_weight > 0:
            weight_map = 1.0 + mouth_weight * cells.to(dev).float()
        per_sample = flow_loss(pred, x0, noise, weight_map=weight_map)
        loss = per_sample.mean()
        out = {"loss": float(loss.detach())}
        if stage.lip_pixel_weight > 0:
            lip = self.lip_pixel_loss(pred, xt + base, t, x0 + base, cells.to(dev), draw.audio.to(dev))
            if lip is not None:
                loss = loss + stage.lip_pixel_weight * lip
                out["lip_px"] = float(lip.detach())
        if lips_loss is not None:
            loss = loss + stage.audio_mouth_weight * lips_loss
            out["lips"] = float(lips_loss.detach())
        loss.backward()
        for name, v in zip(draw.mix_names(), per_sample.detach().cpu().tolist(), strict=True):
            self.history[name].append(v)
        return out

    def lip_pixel_loss(self, pred: torch.Tensor, xt: torch.Tensor, t: torch.Tensor, x0: torch.Tensor,
                       cells: torch.Tensor, heard: torch.Tensor) -> torch.Tensor | None:
        """The decoded-lips loss: how far the lips the prediction implies are from the true ones, in pixels.

        The flow loss sees the mouth as a small, nonlinear part of a few latent cells, so it barely
        rewards listening to the audio (the velocity error on the lip cells with another window's
        audio was within 0.5% of the true audio's; MODEL_CARD). Here the frozen VAE decodes the
        clean latents the prediction implies, ``x0_hat = x_t - t v``, and the true latents, over a
        ``LIP_DECODE_CELLS``-cell square centred on the lips; the loss is the mean squared pixel error
        inside the lip cells, for the samples that hear their audio (without it the mouth is a guess).
        At high noise ``x0_hat`` is the expected clean frame, so the loss asks for the mouth the audio
        implies. Gradients reach the transformer only. None when no sample qualifies.
        """
        has = heard & cells.flatten(1).any(1)
        if not has.any():
            return None
        idx = has.nonzero().flatten()
        size = min(LIP_DECODE_CELLS, *cells.shape[-2:])
        sub = cells[idx].cpu()
        h, w = sub.shape[-2:]
        cy, cx, _ = _lip_centroid(sub)
        ys = (cy - size / 2).round().long().clamp(0, h - size).tolist()
        xs = (cx - size / 2).round().long().clamp(0, w - size).tolist()
        tt = t[idx].view(-1, 1, 1, 1, 1).float()
        x0_hat = _crop_each(xt[idx].float() - tt * pred[idx].float(), ys, xs, size)
        target = _crop_each(x0[idx].float(), ys, xs, size)
        mask = _cell_pixels(_crop_each(sub, ys, xs, size), self.config.vae.spatial_factor).to(x0.device)
        vae = self.model.vae
        flags = [p.requires_grad for p in vae.parameters()]
        for p in vae.parameters():
            p.requires_grad_(False)
        try:
            with torch.autocast(x0.device.type, dtype=torch.bfloat16, enabled=self.amp):
                seen = vae.decode(x0_hat)
                with torch.no_grad():
                    true = vae.decode(target)
        finally:
            for p, f in zip(vae.parameters(), flags, strict=True):
                p.requires_grad_(f)
        err = (seen.float() - true.float()).pow(2).mean(1)  # (n, T, H, W)
        m = mask.float()
        return ((err * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp_min(1)).mean()

    def train_step(self, stage: Stage, batch: dict) -> tuple[dict[str, float], torch.Tensor]:
        """One optimiser step of ``stage`` on ``batch`` at the current learning rate (clipping, EMA):
        the loop's step, and what ``fit-recipe`` times."""
        self.optimizer.zero_grad(set_to_none=True)
        if stage.kind == "vae":
            self._vae_module.train()
            stats = self.vae_step(stage, batch)
        else:
            self.model.vae.eval()
            self.model.transformer.train()
            stats = self.dit_step(stage, batch)
        gnorm = torch.nn.utils.clip_grad_norm_(self._stage_params(stage), self.recipe.grad_clip)
        self.optimizer.step()
        if stage.kind == "dit":
            self.ema.update(self.model.transformer, self.step - self.first_dit_step)
        return stats, gnorm

    def _dit_forward(self, xt, t, cond, frames, read_lips: bool = False):
        return self._dit_module(xt, t, cond, frames, read_lips)

    # -- loop -----------------------------------------------------------------------------------

    def train(self) -> Path:
        recipe = self.recipe
        total = recipe.total_steps if self.max_steps is None else min(recipe.total_steps, self.max_steps)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.dist.main:
            (self.run_dir / "recipe.json").write_text(json.dumps(_recipe_dict(recipe), indent=2))
        log_file = (self.run_dir / "log.jsonl").open("a") if self.dist.main else None
        t_start = time.perf_counter()
        start_step = self.step
        while self.step < total:
            stage_idx, stage, _ = recipe.stage_at(self.step)
            stage_end = sum(s.steps for s in recipe.stages[: stage_idx + 1])
            if stage.steps == 0:
                self.step = stage_end
                continue
            self._ensure_optimizer(stage_idx, stage)
            self._wrap(stage)
            loader = self._loader(stage_idx, stage)
            running: dict[str, float] = defaultdict(float)
            n_running = 0
            for batch in loader:
                if self.step >= min(stage_end, total):
                    break
                _, _, k = recipe.stage_at(self.step)
                lr = lr_at(stage, k, recipe.min_lr_ratio)
                for g in self.optimizer.param_groups:
                    g["lr"] = lr * g.get("lr_mult", 1.0)
                stats, gnorm = self.train_step(stage, batch)
                self.data_state = {"stage": stage_idx, "dataset": {
                    "epoch": int(batch["position"][0]), "batch": int(batch["position"][1]),
                    "seed": recipe.seed + 17 * stage_idx}}
                self.step += 1
                for key, v in stats.items():
                    running[key] += v
                running["grad_norm"] += float(gnorm)
                n_running += 1
                if self.step % recipe.log_every == 0 or self.step == total:
                    avg = {key: v / n_running for key, v in running.items()}
                    self._log_progress(stage, avg, lr, t_start, start_step, total, log_file)
                    running.clear()
                    n_running = 0
                if self.step % recipe.checkpoint_every == 0 and self.step < total:
                    self.save_checkpoint()
                if stage.kind == "vae" and not stage.decoder_only and self.step == stage_end:
                    self.calibrate_latents(stage_idx, stage)
                if self._out_of_time(t_start):
                    break
            del loader
            if self._out_of_time(t_start):
                if self.dist.main:
                    self.log(f"time limit of {self.max_seconds / 60:g} min reached at step {self.step}/{total}; "
                             "the checkpoint resumes from here")
                break
        self.check_ranks_in_sync()
        self.save_checkpoint()
        if log_file:
            log_file.close()
        return self.run_dir

    def _out_of_time(self, t_start: float) -> bool:
        if self.max_seconds is None:
            return False
        over = time.perf_counter() - t_start >= self.max_seconds
        if self.dist.world_size > 1:  # every rank stops at the same step
            import torch.distributed as dist

            flag = torch.tensor([float(over)], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            over = bool(flag.item())
        return over

    @torch.no_grad()
    def check_ranks_in_sync(self) -> None:
        """Under DDP every rank must hold the same weights; a mismatch means broken gradient sync."""
        if self.dist.world_size <= 1:
            return
        import torch.distributed as dist

        fingerprint = torch.stack([p.double().sum() for p in self.model.state_dict().values()
                                   if p.is_floating_point()]).to(self.device)
        gathered = [torch.empty_like(fingerprint) for _ in range(self.dist.world_size)]
        dist.all_gather(gathered, fingerprint)
        worst = max(float((g - gathered[0]).abs().max()) for g in gathered)
        if worst > 1e-6:
            raise RuntimeError(f"ranks disagree on the weights after step {self.step} (max difference {worst:g})")
        if self.dist.main:
            self.log(f"{self.dist.world_size} ranks hold identical weights after step {self.step}")

    def _wrap(self, stage: Stage) -> None:
        """DDP (or FSDP for the large presets) around the module this stage trains."""
        self._vae_module = self.model.vae.decoder if stage.kind == "vae" and stage.decoder_only else self.model.vae
        self._dit_module = TransformerStep(self.model.transformer)
        if self.dist.world_size <= 1:
            return
        if stage.kind == "dit" and self.config.name == "large":
            from torch.distributed.fsdp import fully_shard

            for blk in self.model.transformer.blocks:
                fully_shard(blk)
            fully_shard(self._dit_module)
            return
        from torch.nn.parallel import DistributedDataParallel as DDP

        target = self._vae_module if stage.kind == "vae" else self._dit_module
        ids = [self.dist.local_rank] if self.device.type == "cuda" else None
        # Absent conditions leave their encoders unused in some steps of the transformer stages.
        wrapped = DDP(target, device_ids=ids, find_unused_parameters=stage.kind == "dit")
        if stage.kind == "vae":
            self._vae_module = wrapped
        else:
            self._dit_module = wrapped

    @torch.no_grad()
    def calibrate_latents(self, stage_idx: int, stage: Stage, batches: int = 8) -> None:
        """After the VAE stage: per-channel latent mean/std so the transformer sees unit variance."""
        vae = self.model.vae.eval()
        for buf in (vae.latent_mean, vae.later_mean):
            buf.zero_()
        for buf in (vae.latent_std, vae.later_std):
            buf.fill_(1.0)
        loader = self._loader(stage_idx, stage)
        firsts, laters = [], []
        for i, batch in enumerate(loader):
            if i >= batches:
                break
            seg = stage.segment_frames or self.config.sampling.segment_frames
            z = vae.encode(batch["video"][:, :, :seg].to(self.device)).float().transpose(0, 1)  # (C, B, F, h, w)
            firsts.append(z[:, :, 0].flatten(1))
            if z.shape[2] > 1:
                laters.append(z[:, :, 1:].flatten(1))
        first = torch.cat(firsts, dim=1)
        later = torch.cat(laters, dim=1) if laters else first  # image-only stage: one set for all
        vae.latent_mean.copy_(first.mean(1))
        vae.latent_std.copy_(first.std(1).clamp_min(1e-3))
        vae.later_mean.copy_(later.mean(1))
        vae.later_std.copy_(later.std(1).clamp_min(1e-3))
        if self.dist.world_size > 1:  # every rank uses rank 0's statistics
            import torch.distributed as dist

            for buf in (vae.latent_mean, vae.latent_std, vae.later_mean, vae.later_std):
                dist.broadcast(buf, 0)
        if self.dist.main:
            self.log(f"latent calibration: frame 0 std {vae.latent_std.cpu().numpy().round(3)}, "
                     f"later frames std {vae.later_std.cpu().numpy().round(3)}")

    def _log_progress(self, stage: Stage, avg: dict, lr: float, t0: float, s0: int, total: int, fh) -> None:
        if not self.dist.main:
            return
        done = self.step - s0
        el = time.perf_counter() - t0
        eta = el / max(done, 1) * (total - self.step)
        mixes = {k: sum(v) / len(v) for k, v in self.history.items() if v}
        self.history.clear()
        width = 24
        bar = "#" * int(width * self.step / total) + "-" * (width - int(width * self.step / total))
        msg = (f"[{bar}] step {self.step}/{total} {stage.name} loss {avg.get('loss', 0):.4f} lr {lr:.2e} "
               f"gnorm {avg.get('grad_norm', 0):.2f} ETA {_fmt_time(eta)}")
        if "psnr" in avg:
            msg += f" psnr {avg['psnr']:.1f}"
        if "lip_px" in avg:
            msg += f" lip_px {avg['lip_px']:.4f}"
        if "lips" in avg:
            msg += f" lips {avg['lips']:.3f}"
        if mixes:
            msg += " | " + " ".join(f"{k} {v:.3f}" for k, v in sorted(mixes.items()))
        self.log(msg)
        if fh:
            fh.write(json.dumps({"step": self.step, "stage": stage.name, "lr": lr, **avg, "mix": mixes,
                                 "elapsed": el}) + "\n")
            fh.flush()

    # -- checkpoints ------------------------------------------------------------------------------

    def save_checkpoint(self) -> Path:
        from safetensors.torch import save_file

        if not self.dist.main:
            return self.run_dir
        ck = self.run_dir / "checkpoint.tmp"
        ck.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()},
                  str(ck / "model.safetensors"))
        save_file({k: v.cpu().contiguous() for k, v in self.ema.shadow.items()}, str(ck / "ema.safetensors"))
        opt_tensors, opt_meta = _flatten_optimizer(self.optimizer) if self.optimizer else ({}, None)
        save_file(opt_tensors, str(ck / "optimizer.safetensors"))
        save_file({"generator": self.gen.get_state(), "torch": torch.get_rng_state()}, str(ck / "rng.safetensors"))
        state = {"step": self.step, "opt_stage": self.opt_stage, "optimizer": opt_meta, "data": self.data_state,
                 "init": self.init,
                 "recipe": _recipe_dict(self.recipe), "config": self.config.to_dict()}
        (ck / "state.json").write_text(json.dumps(state, indent=2))
        final = self.run_dir / "checkpoint"
        old = self.run_dir / "checkpoint.old"
        if final.exists():
            final.rename(old)
        ck.rename(final)
        if old.exists():
            for f in old.iterdir():
                f.unlink()
            old.rmdir()
        return final

    def load_checkpoint(self) -> None:
        from safetensors.torch import load_file

        ck = self.run_dir / "checkpoint"
        state = json.loads((ck / "state.json").read_text())
        self.model.load_state_dict(load_file(str(ck / "model.safetensors")))
        self.ema.shadow = {k: v.to(self.device) for k, v in load_file(str(ck / "ema.safetensors")).items()}
        rng = load_file(str(ck / "rng.safetensors"))
        self.gen.set_state(rng["generator"])
        torch.set_rng_state(rng["torch"])
        self.step = int(state["step"])
        self.data_state = state["data"]
        self.init = state.get("init")
        if state["opt_stage"] >= 0 and state["optimizer"] is not None:
            stage = self.recipe.stages[state["opt_stage"]]
            self._ensure_optimizer(state["opt_stage"], stage)
            _restore_optimizer(self.optimizer, load_file(str(ck / "optimizer.safetensors")), state["optimizer"])

    def export(self, folder: str | os.PathLike, card: str, use_ema: bool = True,
               dtype: torch.dtype | None = torch.bfloat16) -> Path:
        """Write a shippable model folder (EMA weights of the transformer)."""
        import copy
        import dataclasses

        from models.checkpoint import save_model

        model = copy.deepcopy(self.model)
        if use_ema and self.step > 0:
            self.ema.copy_to(model.transformer)
        # Generate in segments as long as the windows the transformer was trained on.
        trained = [s.segment_frames for s in self.recipe.stages if s.kind == "dit" and s.segment_frames]
        if trained:
            model.config = model.config.replace(
                sampling=dataclasses.replace(model.config.sampling, segment_frames=trained[-1]))
        return save_model(model, folder, card=card, dtype=dtype, extra={"trained_steps": self.step})


def anchored_motion(motion: torch.Tensor, still: torch.Tensor, max_share: float,
                    gen: torch.Generator) -> torch.Tensor:
    """Motion latents (B, C, T, h, w) pulled toward the reference's still video ``still`` (same shape)
    by a share ``a ~ U(0, max_share)`` per sample: ``still + (1 - a) (motion - still)``.

    Generation does this to the frames it hands over (``SamplingConfig.motion_anchor``), so that each
    segment starts near the face again. A model trained on clean motion frames only reads such a lead
    as "the person has stopped" and holds the mouth shut (the seventh session's measurements); trained
    on anchored ones it learns that the lead carries the face and the audio carries the mouth.
    """
    share = (torch.rand(motion.shape[0], generator=gen) * max_share).to(motion.device, motion.dtype)
    share = share.view(-1, *([1] * (motion.dim() - 1)))
    return still + (1.0 - share) * (motion - still)


def noisy_motion(motion: torch.Tensor, max_sigma: float, gen: torch.Generator) -> torch.Tensor:
    """Motion latents (B, C, T, h, w) moved toward Gaussian noise along the flow path,
    ``(1 - s) m + s n`` with ``s ~ U(0, max_sigma)`` per sample.

    At generation the motion frames are the model's own previous output, re-encoded: never quite
    the clean ground truth the transformer trains on. Training on corrupted motion latents teaches
    it to take the motion from them and the appearance from the reference, so small errors do not
    compound segment after segment (the drift of long takes).
    """
    sigma = torch.rand(motion.shape[0], generator=gen) * max_sigma
    noise = torch.randn(motion.shape, generator=gen).to(motion.device, motion.dtype)
    return interpolate(motion, noise, sigma.to(motion.device))


def _lip_centroid(cells: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Centroid (y, x) in cells of each sample's lip cells ``(B, F, h, w)`` over all frames, and
    whether it has any."""
    h, w = cells.shape[-2:]
    lips = cells.any(1).float()  # (B, h, w)
    mass = lips.sum((1, 2))
    cy = (lips.sum(2) * (torch.arange(h) + 0.5)).sum(1) / mass.clamp_min(1)
    cx = (lips.sum(1) * (torch.arange(w) + 0.5)).sum(1) / mass.clamp_min(1)
    return cy, cx, mass > 0


def _cell_pixels(cells: torch.Tensor, factor: int) -> torch.Tensor:
    """Latent-cell masks ``(B, 1+k, h, w)`` -> video-pixel masks ``(B, 1+4k, h*factor, w*factor)``:
    latent frame 0 is video frame 0, each later one covers the four frames it encodes."""
    frames = torch.cat([cells[:, :1], cells[:, 1:].repeat_interleave(4, dim=1)], dim=1)
    return frames.repeat_interleave(factor, dim=2).repeat_interleave(factor, dim=3)


def _crop_each(x: torch.Tensor, ys: list[int], xs: list[int], size: int) -> torch.Tensor:
    """Sample i's ``size`` x ``size`` window at (ys[i], xs[i]) over the last two dims."""
    h, w = x.shape[-2:]
    ch, cw = min(size, h), min(size, w)
    return torch.stack([v[..., y : y + ch, x : x + cw] for v, y, x in zip(x, ys, xs, strict=True)])


def _flatten_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors = {}
    scalars: dict[str, dict] = {}
    for idx, st in sd["state"].items():
        for name, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{idx}.{name}"] = v.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[name] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _restore_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = v
    for idx, d in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(d)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def _recipe_dict(recipe: Recipe) -> dict:
    import dataclasses

    return dataclasses.asdict(recipe)


def _fmt_time(s: float) -> str:
    s = int(s)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"

