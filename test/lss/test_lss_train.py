"""A tiny CPU training run on synthetic scenes: the loss falls, the held-out IoU beats the
untrained model, checkpoints are written and a resume continues from the saved step.

A minute of CPU training does not yet push vehicle probabilities over 0.5 (the reference
threshold; `bench/train_proof.py` trains long enough for that), so the IoUs compared here use
the threshold that is best on the *training* scenes, for both models (`calibrated_iou`)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
from lss_testutil import rig_calibration

from lss_bev_ros.data.dataset import LSSDataset
from lss_bev_ros.data.synthetic import generate_dataset, split_scene_names
from lss_bev_ros.lss.checkpoint import load_checkpoint
from lss_bev_ros.lss.config import GridConfig
from lss_bev_ros.lss.model import LiftSplatShoot
from lss_bev_ros.lss.train import (
    TrainOptions,
    calibrated_iou,
    consistent_resize_lim,
    evaluate_iou,
    main,
    match_state_layouts,
    model_config,
    train,
)

pytestmark = pytest.mark.slow

SCENES, VAL, SAMPLES = 4, 1, 4


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("train_synth")
    generate_dataset(root, n_scenes=SCENES, samples_per_scene=SAMPLES, seed=21, progress=False)
    return root


def _tiny_cfg(name: str = "small"):
    """Config ``name`` on a coarse 2 m grid (50 x 50 cells): cheap enough for CI on a CPU."""
    cfg = model_config(name)
    g = cfg.grid
    return cfg.replace(
        grid=GridConfig(
            xbound=(-50, 50, 2.0), ybound=(-50, 50, 2.0), zbound=g.zbound, dbound=g.dbound
        )
    )


def test_loss_falls_and_heldout_iou_beats_untrained(tiny_root: Path, tmp_path: Path) -> None:
    from nuscenes.nuscenes import NuScenes

    nusc = NuScenes("v1.0-mini", str(tiny_root), verbose=False)
    cfg = _tiny_cfg()
    train_names, val_names = split_scene_names(SCENES, VAL)
    torch.manual_seed(0)
    untrained = LiftSplatShoot(cfg)
    opts = TrainOptions(
        dataroot=str(tiny_root),
        out_dir=str(tmp_path / "run"),
        epochs=1000,
        max_steps=60,
        batch_size=2,
        lr=3e-3,
        seed=0,
        val_every=30,
        progress=False,
        val_scenes=VAL,
        # float32 contiguous on every CPU ("auto" is bf16, always channels-last, on AMX ones).
        # 60 steps on 3 scenes are chaotic: the same run channels-last (other rounding) ended at
        # held-out IoU 0.087 instead of 0.112 on a 2-core Intel Xeon, under the bar below; the
        # channels-last step itself is checked against this path in
        # test_channels_last_training_step_matches_contiguous, and the resume below runs it.
        amp="off",
        channels_last=False,
    )
    res = train(opts, cfg=cfg, nusc=nusc)
    assert res.steps == 60
    assert res.train_scenes == train_names and res.val_scenes == val_names
    first, last = sum(res.losses[:5]) / 5, sum(res.losses[-5:]) / 5
    assert last < 0.5 * first, res.losses
    assert [h["step"] for h in res.val_history] == [30.0, 60.0]
    assert len(res.aux_losses) == 60  # lidar depth / vehicle auxiliary losses were used

    model, loaded_cfg, extra = load_checkpoint(res.last_checkpoint)
    assert loaded_cfg == cfg and extra["step"] == 60 and "optimizer" in extra
    assert res.best_checkpoint is not None and res.best_checkpoint.is_file()
    val_ds = LSSDataset(nusc, val_names, cfg, is_train=False)
    train_eval = LSSDataset(nusc, train_names, cfg, is_train=False)
    assert evaluate_iou(model, val_ds) == pytest.approx(res.val_history[-1]["iou"], abs=1e-6)
    thr_t, iou_t = calibrated_iou(model, train_eval, val_ds)
    thr_u, iou_u = calibrated_iou(untrained, train_eval, val_ds)
    print(f"held-out IoU trained {iou_t:.3f} (thr {thr_t}) vs untrained {iou_u:.3f} (thr {thr_u})")
    assert math.isfinite(iou_t)
    assert iou_t > 1.5 * iou_u + 0.03, (iou_t, iou_u)

    # Resume: model, optimizer and step continue, here in the other memory layout (trained
    # contiguous, resumed channels-last, the default): Adam's moments follow their parameters.
    assert _moment_layouts(extra["optimizer"]) == {"contiguous"}
    more = dataclasses.replace(opts, max_steps=62, val_every=0, resume=str(res.last_checkpoint),
                               channels_last=True)
    res2 = train(more, nusc=nusc)
    assert res2.steps == 62 and len(res2.losses) == 2
    extra2 = load_checkpoint(res2.last_checkpoint)[2]
    assert extra2["step"] == 62
    assert _moment_layouts(extra2["optimizer"]) == {"channels_last"}


def _moment_layouts(opt_state: dict) -> set[str]:
    """The memory layouts of Adam's moments of the 3 x 3 (and larger) conv weights."""
    out = set()
    for st in opt_state["state"].values():
        for k in ("exp_avg", "exp_avg_sq"):
            v = st[k]
            if v.dim() == 4 and v.shape[1] > 1 and v.shape[-1] > 1:
                out.add("contiguous" if v.is_contiguous() else
                        "channels_last" if v.is_contiguous(memory_format=torch.channels_last)
                        else "other")
    return out


def test_match_state_layouts_gives_moments_their_parameter_layout() -> None:
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 3).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(conv.parameters())
    conv(torch.randn(2, 3, 8, 8)).sum().backward()
    opt.step()
    fresh = torch.nn.Conv2d(3, 4, 3)  # contiguous, as a --memory-format contiguous resume
    fresh.load_state_dict(conv.state_dict())
    opt2 = torch.optim.Adam(fresh.parameters())
    opt2.load_state_dict(opt.state_dict())
    m = opt2.state[fresh.weight]["exp_avg"]
    assert not m.is_contiguous()  # load_state_dict keeps the saved strides
    assert match_state_layouts(opt2) == 2  # the weight's exp_avg and exp_avg_sq (bias: 1-D)
    m2 = opt2.state[fresh.weight]["exp_avg"]
    assert m2.is_contiguous() and torch.equal(m2, m)
    assert match_state_layouts(opt2) == 0


def test_small_config_augmentation_matches_its_eval_resize() -> None:
    cfg = model_config("small")
    lo, hi = cfg.image.resize_lim
    eval_resize = max(h / s for h, s in zip(cfg.image.final_dim, cfg.image.src_size, strict=True))
    assert lo <= eval_resize <= hi * 1.05
    full = model_config("full")
    assert full.image.resize_lim == (0.193, 0.225)  # the reference range is left alone
    assert consistent_resize_lim(full) == full


def test_cli_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in (
        "--memory-format",
        "--dataroot",
        "--version",
        "--out",
        "--config",
        "--epochs",
        "--max-steps",
        "--batch-size",
        "--lr",
        "--resume",
        "--val-every",
        "--seed",
    ):
        assert flag in out


def test_channels_last_training_step_matches_contiguous() -> None:
    """The NHWC training path (the default) feeds both encoders channels-last tensors and
    computes the logits, lift outputs and gradients of the contiguous one, on a small_cpu model
    (stride-8 features, slim BEV encoder) with a real rig calibration.

    Eval-mode batch norm: float32 sums in another order, ~1e-5 apart. Train-mode batch norm
    (what training runs; drop-connect off) amplifies rounding: against a float64 reference both
    layouts keep the gradient direction (cosine > 0.999; measured 0.9999 contiguous vs 0.9993
    channels-last at 1 thread, 0.9998 both at 2 threads)."""
    import copy

    from lss_bev_ros.lss.train import forward_staged

    cfg = _tiny_cfg("small_cpu")
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(2, cfg.image.ncams, 3, *cfg.image.final_dim, generator=gen)
    batch = [images, *rig_calibration(cfg, cfg.image.ncams, batch=2)]
    torch.manual_seed(0)
    base = LiftSplatShoot(cfg)
    trunk = base.camencode.trunk
    trunk._global_params = trunk._global_params._replace(drop_connect_rate=0.0)
    cpu = torch.device("cpu")

    def run(model: LiftSplatShoot, nhwc: bool, inputs: list[torch.Tensor]):
        """(logits, depth, context, {name: grad}, [NHWC input of the first conv of the camera
        encoder, of the BEV encoder])."""
        first = [next(m for m in enc.modules() if isinstance(m, torch.nn.Conv2d))
                 for enc in (model.camencode, model.bevencode)]
        seen: list[bool] = []
        hooks = [c.register_forward_pre_hook(
            lambda _m, a: seen.append(a[0].is_contiguous(memory_format=torch.channels_last)))
            for c in first]
        out, depth, context = forward_staged(model, inputs, cpu, False, return_lift=True,
                                             channels_last=nhwc)
        for h in hooks:
            h.remove()
        (out.sigmoid().mean() + context.square().mean()).backward()
        grads = {n: p.grad.detach().double() for n, p in model.named_parameters()}
        return out.detach().double(), depth.detach(), context.detach(), grads, seen

    def rel_err(a: torch.Tensor, b: torch.Tensor, floor: float = 1e-12) -> float:
        """Largest difference relative to the largest magnitude of ``b`` (at least ``floor``)."""
        a, b = a.double(), b.double()
        return float((a - b).abs().max() / b.abs().max().clamp_min(floor))

    def layouts(mode: str):
        """float64 reference, float32 contiguous, float32 channels-last runs in this BN mode."""
        m64 = copy.deepcopy(base).train(mode == "train").double()
        ref = run(m64, False, [t.double() for t in batch])
        m32 = copy.deepcopy(base).train(mode == "train")
        mcl = copy.deepcopy(m32).to(memory_format=torch.channels_last)
        return ref, run(m32, False, batch), run(mcl, True, batch)

    def grad_errors(res, ref) -> tuple[float, float]:
        """(worst per-tensor gradient error, against at least 1e-3 of the largest gradient:
        BN biases whose output feeds only a conv + BN have an exact gradient of 0; cosine of
        all gradients) against the reference."""
        g_max = max(float(g.abs().max()) for g in ref[3].values())
        worst = max(rel_err(res[3][n], g, 1e-3 * g_max) for n, g in ref[3].items())
        cos = torch.nn.functional.cosine_similarity(
            torch.cat([res[3][n].flatten() for n in ref[3]]),
            torch.cat([g.flatten() for g in ref[3].values()]), dim=0)
        return worst, float(cos)

    ref, con, nhwc = layouts("eval")
    assert con[4] == [False, False] and nhwc[4] == [True, True]  # the flag reaches both convs
    assert con[0].shape == (2, 1, 50, 50) and con[0].std() > 0
    for k in range(3):  # logits, depth, context: float32 rounding apart
        assert rel_err(nhwc[k], con[k]) < 2e-4, k
    e_con, e_nhwc = grad_errors(con, ref), grad_errors(nhwc, ref)
    print("eval-mode BN (worst tensor, cosine) vs float64: contiguous", e_con, "NHWC", e_nhwc)
    # measured 0.002-0.008 for either layout (it depends on the thread count); a layout bug: O(1)
    assert max(e_con[0], e_nhwc[0]) < 0.03 and min(e_con[1], e_nhwc[1]) > 0.99999

    ref, con, nhwc = layouts("train")
    e_con, e_nhwc = grad_errors(con, ref), grad_errors(nhwc, ref)
    print("train-mode BN (worst tensor, cosine) vs float64: contiguous", e_con, "NHWC", e_nhwc)
    for res in (con, nhwc):
        assert rel_err(res[0], ref[0]) < 2e-3
    assert min(e_con[1], e_nhwc[1]) > 0.999
