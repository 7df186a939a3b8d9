"""TensorBoard events of the real Hydra app, read back with TensorBoard's own reader."""

import json

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def _events(run_dir):
    return EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0, "images": 0}).Reload()


def test_scalars_and_test_images_at_their_steps_and_resume_continues(run_train, example_dir, tmp_path):
    run_dir = tmp_path / "run"
    common = [f"data_dir={example_dir}", "init.from_priors=false", "log.every=2", "log.eval_every=4",
              f"hydra.run.dir={run_dir}"]
    run_train("steps=4", *common)
    run_train("steps=6", "resume=true", *common)
    ea = _events(run_dir)
    scalars = ea.Tags()["scalars"]
    for tag in ("train/loss", "train/photometric", "train/depth", "train/psnr", "train/num_gaussians",
                "train/sec_per_step", "lr/means", "lr/sh0"):
        assert [e.step for e in ea.Scalars(tag)] == [2, 4, 6], tag  # the resumed run continues at 6, no repeat
    for tag in ("test/psnr", "test/ssim", "test/depth_abs_rel", "test/depth_delta1"):
        assert [e.step for e in ea.Scalars(tag)] == [4, 6], tag  # eval_every and the last step
    m = json.loads((run_dir / "metrics.json").read_text())
    # same renders of the same model in the same process as metrics.json: equal up to float summation order
    assert abs(ea.Scalars("test/psnr")[-1].value - m["test"]["psnr"]) < 1e-3
    assert ea.Scalars("train/num_gaussians")[-1].value == m["num_gaussians"]
    loss = {e.step: e.value for e in ea.Scalars("train/loss")}
    photo = {e.step: e.value for e in ea.Scalars("train/photometric")}
    depth = {e.step: e.value for e in ea.Scalars("train/depth")}
    assert all(depth[s] > 0 and loss[s] >= photo[s] + depth[s] - 1e-6 for s in loss)  # + MCMC regularisers
    lr = [e.value for e in ea.Scalars("lr/means")]
    assert lr[0] > lr[1] > lr[2] > 0  # exponential decay
    assert all(e.value > 0 for e in ea.Scalars("train/sec_per_step"))
    assert [(e.step, e.value) for e in ea.Scalars("depth/mean_weight")] == [(2, 1.0), (4, 1.0), (6, 1.0)]
    assert [e.value for e in ea.Scalars("depth/views_trusted")] == [21, 21, 21]
    assert {t for t in scalars if t.startswith("depth/views_")} == {
        "depth/views_trusted", "depth/views_partial", "depth/views_pending", "depth/views_rejected"}
    weights = [t for t in scalars if t.startswith("depth_weight/")]
    assert len(weights) == 21 and [(e.step, e.value) for e in ea.Scalars("depth_weight/view_01")] == [(4, 1.0), (6, 1.0)]
    assert sorted(t for t in ea.Tags()["images"]) == ["test_view/view_00", "test_view/view_08", "test_view/view_16"]
    images = ea.Images("test_view/view_00")
    assert [(e.step, e.width, e.height) for e in images] == [(4, 320, 60), (6, 320, 60)]  # 4 panels of 80 x 60
    assert len(list((run_dir / "tb").glob("events.out.tfevents.*"))) == 2
