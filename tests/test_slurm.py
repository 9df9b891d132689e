"""Time limits, preemption and the SLURM launchers.

First, without SLURM: a stop signal (SIGUSR2 = a SLURM time limit through submitit,
SIGTERM = preemption) checkpoints the run at the current step, mid-epoch, and the
resumed run ends with exactly the metrics of an uninterrupted one; a requeued run that
cannot progress fails with a clear message instead of requeueing forever.

Then on a real single-node SLURM cluster (tests/slurm_cluster.py): submitit_slurm sweeps
with completed/diverged/failed jobs, a job that reaches its time limit and one preempted
with ``scontrol requeue`` (both resume exactly), and the slurm_gpu preset's sbatch script
with its GPU actually scheduled.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
import torch

from adaxbench.train import runner
from adaxbench.train.runner import Interrupted, run_in_dir

from conftest import EVERY_EPOCH, ROOT, comparable, compose_cfg, fake_image_arrays, read_run

# 7 steps per epoch (1000 examples, batch 128), 3 epochs.
QUADRATIC = ["task=quadratic_deep", "optimizer=adam", "optimizer.lr=0.01", "trainer.epochs=3",
             "trainer.log_every=2", "trainer.progress=false", "trainer.threads=1"]
# Crop + flip augmentation draws from the epoch's generator: 8 steps per epoch, 2 epochs.
CIFAR = ["task=cifar10_3c3d", "optimizer=adax", "task.batch_size=16", "trainer.train_limit=128",
         "trainer.eval_limit=64", "task.valid_size=32", "task.train_eval_size=32", "trainer.epochs=2",
         "trainer.log_every=3", "trainer.progress=false", "trainer.threads=1"]


_REAL_BUILD_TASK = runner.build_task


def _fake_cifar(monkeypatch):
    from adaxbench.tasks import image

    monkeypatch.setattr(image, "load_dataset", lambda name, root, download=False: fake_image_arrays(name, 160, 64))


def _signal_at_step(monkeypatch, signum: int, at_step: int | None, at_start: bool = False):
    """Make the run send itself ``signum`` right after optimizer step ``at_step`` (or while
    it builds its task, with ``at_start``), as SLURM would at an arbitrary moment."""
    def build(*args, **kwargs):
        task = _REAL_BUILD_TASK(*args, **kwargs)
        if at_start:
            os.kill(os.getpid(), signum)
        real_after, steps = task.after_step, [0]

        def after_step(model):
            real_after(model)
            steps[0] += 1
            if steps[0] == at_step:
                os.kill(os.getpid(), signum)
        task.after_step = after_step
        return task

    monkeypatch.setattr(runner, "build_task", build)


@pytest.fixture
def requeue_handler():
    """A stand-in for submitit's SIGUSR2 handler (pickle the job, `scontrol requeue`, exit)."""
    calls = []

    def handler(signum, frame):
        calls.append(signum)
        sys.exit(-1)
    previous = signal.signal(signal.SIGUSR2, handler)
    yield calls
    signal.signal(signal.SIGUSR2, previous)


@pytest.mark.parametrize("signum,overrides", [(signal.SIGUSR2, QUADRATIC), (signal.SIGTERM, QUADRATIC),
                                              (signal.SIGUSR2, CIFAR)], ids=["usr2-quadratic", "term-quadratic",
                                                                             "usr2-cifar-augmented"])
def test_stop_signal_checkpoints_mid_epoch_and_resume_is_exact(signum, overrides, tmp_path, monkeypatch):
    _fake_cifar(monkeypatch)
    cfg = compose_cfg(overrides)
    assert run_in_dir(cfg, tmp_path / "straight").status == "completed"
    steps_per_epoch = 7 if "quadratic" in overrides[0] else 8
    stop_step = steps_per_epoch + 3  # epoch 1, after its third batch

    _signal_at_step(monkeypatch, signum, stop_step)
    with pytest.raises(Interrupted):
        run_in_dir(cfg, tmp_path / "run")
    info, _ = read_run(tmp_path / "run")
    assert info["status"] == "interrupted" and signal.Signals(signum).name in info["error"]
    assert info["progress"]["step"] == stop_step and info["progress"]["epoch"] == 1
    assert info["progress"]["stops"] == [{"step": stop_step, "signal": signal.Signals(signum).name}]
    checkpoint = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert checkpoint["step"] == stop_step and checkpoint["epoch"] == 1  # mid-epoch, not the epoch end

    monkeypatch.setattr(runner, "build_task", _REAL_BUILD_TASK)
    assert run_in_dir(cfg, tmp_path / "run", resume=True).status == "completed"
    info, metrics = read_run(tmp_path / "run")
    assert info["progress"]["resumed_from_step"] == stop_step
    straight_info, straight = read_run(tmp_path / "straight")
    pd.testing.assert_frame_equal(comparable(metrics), comparable(straight))
    assert info["final"] == straight_info["final"]


def test_requeue_without_progress_fails_instead_of_looping(tmp_path, monkeypatch, requeue_handler):
    cfg = compose_cfg(QUADRATIC)
    # First allocation: the time-limit signal after 4 steps; the run checkpoints, then
    # hands over to submitit's handler, which requeues the job and exits.
    _signal_at_step(monkeypatch, signal.SIGUSR2, 4)
    with pytest.raises(SystemExit):
        run_in_dir(cfg, tmp_path / "run")
    assert requeue_handler == [signal.SIGUSR2]
    assert read_run(tmp_path / "run")[0]["status"] == "interrupted"

    # Second allocation progresses to step 9 before its signal: requeued again.
    _signal_at_step(monkeypatch, signal.SIGUSR2, 5)
    with pytest.raises(SystemExit):
        run_in_dir(cfg, tmp_path / "run", resume=True)
    assert len(requeue_handler) == 2
    assert [s["step"] for s in read_run(tmp_path / "run")[0]["progress"]["stops"]] == [4, 9]

    # Third allocation is signalled before it can take a step: no progress since the
    # last requeue, so it says so and ends instead of being requeued forever.
    _signal_at_step(monkeypatch, signal.SIGUSR2, None, at_start=True)
    result = run_in_dir(cfg, tmp_path / "run", resume=True)
    assert result.status == "failed" and len(requeue_handler) == 2
    info, _ = read_run(tmp_path / "run")
    assert info["status"] == "failed" and "twice at step 9 without progress" in info["error"]
    assert "hydra.launcher.timeout_min" in info["error"]


def test_sigterm_to_a_cli_run_checkpoints_mid_epoch(tmp_path):
    """The real process: SIGTERM while it trains stops it at a step boundary with a checkpoint."""
    run_dir = tmp_path / "run"
    args = ["task=quadratic_deep", "task.train_size=20000", "trainer.epochs=50", "trainer.log_every=1",
            "trainer.progress=false", "trainer.threads=1", EVERY_EPOCH, f"hydra.run.dir={run_dir}"]
    proc = subprocess.Popen([sys.executable, "-m", "adaxbench", "run", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if read_run(run_dir)[1]["split"].eq("batch").sum() >= 3:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    info, _ = read_run(run_dir)
    step = info["progress"]["step"]
    assert info["status"] == "interrupted" and info["progress"]["stops"] == [{"step": step, "signal": "SIGTERM"}]
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["step"] == step > 0


def test_slurm_time_limit_settings_that_would_kill_starting_jobs_are_refused(tmp_path):
    """The issue's exit 140: timeout_min=1 with signal_delay_s=35 puts SLURM's warning
    (sent up to 30 s early) inside the job's start-up. Refused before submitting."""
    from adaxbench.train.slurm import check_launcher

    slurm = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert "need timeout_min*60 - signal_delay_s >= 45" in check_launcher(
        {"_target_": slurm, "timeout_min": 1, "signal_delay_s": 35})
    assert check_launcher({"_target_": slurm, "timeout_min": 1, "signal_delay_s": 15}) is None
    assert check_launcher({"_target_": slurm, "timeout_min": 240, "signal_delay_s": 120}) is None
    proc = subprocess.run([sys.executable, "-m", "adaxbench", "run", "-m", "hydra/launcher=submitit_slurm",
                           "hydra.launcher.timeout_min=1", "hydra.launcher.signal_delay_s=35", "task=quadratic_deep",
                           f"hydra.sweep.dir={tmp_path}/sweep"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "adaxbench: error: hydra.launcher.signal_delay_s=35 leaves 25 s of hydra.launcher.timeout_min=1: SLURM sends "
        "its time-limit signal up to 30 s early, so it would reach jobs while they start and kill them; need "
        "timeout_min*60 - signal_delay_s >= 45"]
    assert not (tmp_path / "sweep" / ".submitit").exists()  # nothing was submitted


def test_a_slurm_job_unpickles_its_task_without_importing_torch():
    """submitit installs its SIGUSR2 handler only after unpickling the job: everything that
    unpickling imports (the task function, the sweep callbacks) must load in well under a second."""
    code = ("import sys, adaxbench.cli, adaxbench.train.sweep, adaxbench.train.threads, adaxbench.train.slurm, "
            "hydra_plugins.hydra_submitit_launcher.submitit_launcher; "
            "heavy = [m for m in ('torch', 'pandas', 'pyarrow') if m in sys.modules]; "
            "assert not heavy, heavy; assert adaxbench.cli.run_job.__module__ == 'adaxbench.cli'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# ---- a real SLURM cluster ----------------------------------------------------------------

from slurm_cluster import ClusterError, SlurmCluster, cannot_start_reason  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    reason = cannot_start_reason()
    if reason:
        pytest.skip(reason)
    c = SlurmCluster()
    try:
        c.start()
    except (ClusterError, OSError, subprocess.SubprocessError) as e:
        c.stop()
        pytest.skip(f"the SLURM test cluster did not start: {e}")
    # SLURM holds a requeued job for ~2 minutes before it may start again; release it at
    # once so the tests do not wait (the resume itself is what they check).
    done = threading.Event()

    def release():
        while not done.wait(0.5):
            try:
                c.release_requeued()
            except (ClusterError, OSError, subprocess.SubprocessError):
                pass
    watcher = threading.Thread(target=release, daemon=True)
    watcher.start()
    yield c
    done.set()
    watcher.join()
    c.cancel_all()
    c.stop()


def _slurm_run(cluster, *args, timeout=300, **kw):
    env = {**cluster.env, "PYTHONUNBUFFERED": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    env.pop("OMP_NUM_THREADS", None)  # the thread budget decides
    return subprocess.run([sys.executable, "-m", "adaxbench", "run", "-m", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, **kw)


def _statuses(sweep: Path) -> dict[str, str]:
    return {p.parent.name: json.loads(p.read_text())["status"] for p in sorted(sweep.glob("*/run.json"))}


def _array_job(sweep: Path) -> str:
    """The SLURM job id of a sweep (its array), from submitit's folder."""
    folder = sweep / ".submitit"
    ids = sorted({p.name.split("_")[0] for p in folder.iterdir() if p.is_dir() and re.fullmatch(r"\d+(_\d+)?", p.name)})
    assert len(ids) == 1, ids
    return ids[0]


def _final_record(cluster, job: str, timeout: float = 30) -> dict[str, str]:
    """sacct's record of ``job`` (``ID`` or array task ``ID_i``) once it left RUNNING/COMPLETING
    (submitit writes its result, which ends the sweep, before SLURM has finished the job)."""
    deadline = time.time() + timeout
    while True:
        # A single job is not an array: job 7's task 0 is then plain 7. The last record is the
        # latest run of a requeued job.
        rows = [r for r in cluster.sacct(job.split("_")[0]) if r["JobID"] in (job, job.removesuffix("_0"))]
        row = rows[-1] if rows else {}
        if row.get("State") not in ("RUNNING", "COMPLETING", "PENDING", None) or time.time() > deadline:
            return row
        time.sleep(0.5)


def _final_state(cluster, job: str) -> str | None:
    return _final_record(cluster, job).get("State")


# Completes, diverges, and (mnist_mlp without its data: a failure found only when the job runs,
# since every job's config is checked before the sweep starts) fails twice.
SYNTHETIC_MIXED = ["task=quadratic_deep,mnist_mlp", "optimizer=sgd", "optimizer.lr=0.05,1e12",
                   "trainer.epochs=1", "trainer.log_every=1", "trainer.progress=false"]


def test_submitit_slurm_sweep_records_each_outcome(cluster, tmp_path):
    sweep = tmp_path / "sweep"
    proc = _slurm_run(cluster, "hydra/launcher=submitit_slurm", "hydra.launcher.timeout_min=5",
                      "hydra.launcher.cpus_per_task=1", *SYNTHETIC_MIXED, f"data.root={tmp_path / 'no-data'}",
                      f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 1, proc.stdout + proc.stderr  # two jobs failed
    assert "1 completed, 1 diverged, 2 failed" in proc.stdout
    assert _statuses(sweep) == {"0": "completed", "1": "diverged", "2": "failed", "3": "failed"}
    assert "not found" in read_run(sweep / "2")[0]["error"]
    # Each job really went through SLURM, and used the one CPU it was given.
    job = _array_job(sweep)
    assert [_final_state(cluster, f"{job}_{i}") for i in range(4)] == ["COMPLETED"] * 4
    for job in ("0", "1"):
        env = read_run(sweep / job)[0]["env"]
        assert env["threads"] == 1, env


def test_optuna_trials_on_slurm_report_their_scores(cluster, tmp_path):
    """Hydra's Optuna sweeper proposes two trials at a time; each runs as a SLURM job and its score
    (the selection metric, quadratic_deep's final train/loss) comes back through submitit."""
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    sweep = tmp_path / "sweep"
    proc = _slurm_run(cluster, "hydra/sweeper=optuna", "hydra.sweeper.direction=minimize", "hydra.sweeper.n_trials=2",
                      "hydra.sweeper.n_jobs=2", "hydra.sweeper.sampler.seed=0", "hydra/launcher=submitit_slurm",
                      "hydra.launcher.timeout_min=5", "hydra.launcher.cpus_per_task=1", "optimizer=adam",
                      "optimizer.lr=tag(log,interval(1e-3,1.0))", "task=quadratic_deep", "trainer.epochs=1",
                      "trainer.progress=false", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    losses = [read_run(sweep / job)[0]["final"]["train/loss"] for job in ("0", "1")]
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert results["best_value"] == pytest.approx(min(losses))


def test_slurm_gpu_preset_schedules_one_gpu(cluster, tmp_path):
    sweep = tmp_path / "sweep"
    env = {"ADAXBENCH_SLURM_PARTITION": "debug", "ADAXBENCH_SLURM_ACCOUNT": "root", "ADAXBENCH_SLURM_TIME_MIN": "7", "ADAXBENCH_SLURM_CPUS": "1",
           "ADAXBENCH_SLURM_MEM_GB": "1"}
    proc = subprocess.run([sys.executable, "-m", "adaxbench", "run", "-m", "hydra/launcher=slurm_gpu",
                           "task=quadratic_deep", "task.train_size=512", "trainer.epochs=1", "trainer.progress=false",
                           f"hydra.sweep.dir={sweep}"], cwd=ROOT, env={**cluster.env, **env}, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 completed, 0 diverged, 0 failed" in proc.stdout
    job = _array_job(sweep)
    script = next((sweep / ".submitit").glob(f"{job}_*/{job}_*_submission.sh"), None) or \
        next((sweep / ".submitit").glob("*/*_submission.sh"))
    lines = set(script.read_text().splitlines())
    for flag in ("--gpus-per-node=1", "--cpus-per-task=1", "--mem=1GB", "--time=7", "--partition=debug", "--account=root",
                 "--ntasks-per-node=1", "--nodes=1", "--requeue", "--signal=USR2@120", "--job-name=adaxbench"):
        assert f"#SBATCH {flag}" in lines, (flag, sorted(lines))
    # The GPU was really allocated by the scheduler (the node declares Gres=gpu:1) ...
    record = _final_record(cluster, f"{job}_0")
    assert record["State"] == "COMPLETED" and "gres/gpu=1" in record["AllocTRES"], record
    # ... while training ran on this GPU-less machine's CPU (trainer.device=auto).
    info, _ = read_run(sweep / "0")
    assert info["status"] == "completed" and info["env"]["device"] == "cpu"


# 100 steps per epoch: long enough to be caught mid-run, a few seconds of CPU in all.
LONG_QUADRATIC = ["task=quadratic_deep", "task.train_size=25600", "optimizer=adam", "optimizer.lr=0.003",
                  "trainer.epochs=60", "trainer.log_every=25", "trainer.progress=false", "trainer.threads=1", EVERY_EPOCH]


def _progress(run_dir: Path) -> dict:
    try:
        info = json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):
        return {}
    return {"status": info["status"], **info["progress"]}


def _job_process(job: str) -> int:
    """PID of the Python process that runs SLURM job ``job`` on this machine."""
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if b"submitit.core._submit" not in argv or not Path(argv[0].decode()).name.startswith("python"):
                continue  # srun's command line names the module too
            env = dict(v.split("=", 1) for v in (proc / "environ").read_bytes().decode(errors="replace").split("\0")
                       if "=" in v)
        except OSError:
            continue
        if env.get("SLURM_JOB_ID") == job:
            return int(proc.name)
    raise LookupError(f"no process for job {job}")


def _sigterm_pending_or_running(pid: int) -> bool:
    """A stopped process has SIGTERM pending, or runs again (slurmstepd's SIGCONT), or is gone."""
    try:
        status = dict(line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                      if ":\t" in line)
    except OSError:
        return True
    pending = int(status.get("ShdPnd", "0"), 16) | int(status.get("SigPnd", "0"), 16)
    return bool(pending & 1 << (signal.SIGTERM - 1)) or not status.get("State", "").startswith("T")


def _diagnostics(cluster, sweep: Path, job: str) -> str:
    """What SLURM and the jobs said, for a failure message."""
    parts = ["\n--- sacct"] + [str(r) for r in cluster.sacct(job, "JobID,State,ExitCode,Start,End")]
    ctld = cluster.root / "log" / "slurmctld.log"
    parts += ["--- slurmctld.log", "\n".join(ctld.read_text(errors="replace").splitlines()[-40:])]
    for log in sorted((sweep / ".submitit").glob("*/*_log.*")):
        parts += [f"--- {log.name}", log.read_text(errors="replace")[-3000:]]
    for run in sorted(sweep.glob("*/run.json")):
        parts += [f"--- {run}", run.read_text()[:1500]]
    return "\n".join(parts)


def _wait(predicate, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (value := predicate()):
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _submitted(sweep: Path) -> str:
    folder = sweep / ".submitit"
    _wait(lambda: folder.exists() and any(re.fullmatch(r"\d+(_\d+)?", p.name) for p in folder.iterdir()), 60,
          f"the submission of {sweep}")
    return _array_job(sweep)


def test_time_limit_and_preemption_resume_to_the_uninterrupted_metrics(cluster, tmp_path):
    """A job that reaches its time limit (timeout_min=1): SLURM's SIGUSR2 makes it checkpoint
    at its current step and submitit requeue it. A job preempted with `scontrol requeue`
    (SIGTERM). Both resume from their checkpoints and end with the metrics of uninterrupted
    runs (same thread count), and each sweep reports its job completed.

    Two one-job sweeps rather than one array: SLURM 22.05 can record an array task FAILED,
    never to run again, when a sibling task completes while it is being requeued."""
    straight = tmp_path / "straight"
    reference = subprocess.Popen([sys.executable, "-m", "adaxbench", "run", "-m", *LONG_QUADRATIC, "seed=0,1",
                                  f"hydra.sweep.dir={straight}"], cwd=ROOT, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
    env = {**cluster.env, "PYTHONUNBUFFERED": "1"}
    sweeps = {"timeout": tmp_path / "timeout", "preempt": tmp_path / "preempt"}
    commands = {name: [sys.executable, "-m", "adaxbench", "run", "-m", "hydra/launcher=submitit_slurm",
                       "hydra.launcher.timeout_min=1", "hydra.launcher.signal_delay_s=5",
                       "hydra.launcher.max_num_timeout=10", "hydra.launcher.cpus_per_task=1", *LONG_QUADRATIC,
                       f"seed={seed}", f"hydra.sweep.dir={sweeps[name]}"] for seed, name in enumerate(sweeps)}
    launches = {name: subprocess.Popen(commands[name], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True) for name in sweeps}
    outputs = {}
    try:
        jobs = {name: _submitted(sweep) for name, sweep in sweeps.items()}
        # Time limit: the job trains, then sits (stopped, so it spares the shared CPUs, as a long
        # epoch would not) until SLURM must have sent the time-limit signal: 60 s limit - 5 s
        # delay - up to 30 s early = 25..55 s after its start (past a start-up slowed by the
        # other tests running beside this one). Caught first: its training lasts seconds.
        _wait(lambda: _progress(sweeps["timeout"] / "0").get("step", 0) > 0, 90, "the timed-out job to train")
        started = time.time()  # no earlier than the job's start
        pid = _job_process(jobs["timeout"])
        os.kill(pid, signal.SIGSTOP)
        try:  # slurmstepd sends SIGCONT with its signal: the job then checkpoints and requeues
            # Preemption: requeue the other job while it trains, held stopped until the requeue's
            # SIGTERM has reached it (its training lasts seconds: it could otherwise end first).
            _wait(lambda: _progress(sweeps["preempt"] / "0").get("step", 0) > 0, 90, "the preempted job to train")
            preempted_pid = _job_process(jobs["preempt"])
            os.kill(preempted_pid, signal.SIGSTOP)
            try:
                cluster.run("scontrol", "requeue", jobs["preempt"])
                _wait(lambda: _sigterm_pending_or_running(preempted_pid), 30, "the requeue's SIGTERM")
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(preempted_pid, signal.SIGCONT)
            _wait(lambda: time.time() > started + 57 or
                  "SIGUSR2" in str(_progress(sweeps["timeout"] / "0").get("stops")), 60, "the time-limit signal")
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        for name, launch in launches.items():
            outputs[name] = launch.communicate(timeout=240)
    finally:
        for launch in launches.values():
            if launch.poll() is None:
                launch.kill()
    for name, (out, err) in outputs.items():
        if launches[name].returncode == 0 and "1 completed, 0 diverged, 0 failed" in out:
            continue
        # SLURM 22.05 now and then files a job's requeued instance as FAILED and never runs it
        # (see the docstring); submitit then gives up on it. A user relaunches the sweep into its
        # dir: the job resumes from its checkpoint. That is what is tested then, once.
        first = out + err + _diagnostics(cluster, sweeps[name], jobs[name])
        again = subprocess.run(commands[name], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert again.returncode == 0 and "1 completed, 0 diverged, 0 failed" in again.stdout, \
            first + again.stdout + again.stderr
    assert reference.wait(timeout=240) == 0, reference.communicate()[1]

    timed_out, _ = read_run(sweeps["timeout"] / "0")
    preempted, _ = read_run(sweeps["preempt"] / "0")
    assert "SIGUSR2" in [s["signal"] for s in timed_out["progress"]["stops"]], timed_out["progress"]
    assert preempted["progress"]["stops"][0]["signal"] == "SIGTERM", preempted["progress"]
    for seed, name in enumerate(sweeps):
        # SLURM's own account: requeued at least once. (Its final state is not checked: SLURM
        # 22.05 sometimes files the exit of a job's requeued instance as FAILED.)
        _final_state(cluster, jobs[name])
        assert "REQUEUED" in [r["State"] for r in cluster.sacct(jobs[name]) if r["JobID"] == jobs[name]]
        info, metrics = read_run(sweeps[name] / "0")
        ref_info, ref_metrics = read_run(straight / str(seed))
        assert info["status"] == "completed" and info["env"]["threads"] == ref_info["env"]["threads"] == 1
        pd.testing.assert_frame_equal(comparable(metrics), comparable(ref_metrics))
        assert info["final"] == ref_info["final"]
