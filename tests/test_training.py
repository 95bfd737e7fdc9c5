"""Training behaviour: a tiny model memorises a batch; resume after SIGKILL equals an
uninterrupted run; two data-parallel ranks equal one rank with the whole batch, launched by
torchrun or by Lightning (lightning.py)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from rnnt import checkpoint as ckpt
from rnnt.config import RunConfig
from rnnt.corpus import read_librispeech, write_manifest
from rnnt.data import UtteranceDataset, collate
from rnnt.device import check_lstm_amp, native_bf16, resolve_amp
from rnnt.distributed import Distributed, check_resume_world, sum_gradients
from rnnt.evaluation import evaluate
from rnnt.loss import rnnt_loss
from rnnt.runtimes.pytorch import TorchRuntime
from rnnt.training import Trainer

from .conftest import REPO, tiny_run_config

KILL_TIMEOUT_S = 120


# Pruned with k2's default range. With 3 (at most 2 characters per 60 ms frame) the memorised
# loss stalled near log 2 per utterance while the simple joint's went to 0.
@pytest.mark.parametrize("prune_range", [0, 5])
def test_tiny_model_memorises_a_batch(tmp_path: Path, tiny_corpus: Path, prune_range: int) -> None:
    utterances = sorted(read_librispeech(tiny_corpus / "train"), key=lambda u: u.duration)[:3]
    manifest = tmp_path / "memorise.jsonl"
    write_manifest(manifest, utterances)
    config = tiny_run_config(
        tmp_path,
        tiny_corpus,
        max_steps=300,
        lr=5e-3,
        warmup_steps=10,
        batch_seconds=60.0,
        checkpoint_every=1000,
        prune_range=prune_range,
        prune_warmup_steps=50,
    )
    data = dataclasses.replace(config.data, train_manifests=str(manifest), dev_manifest=str(manifest))
    width = 96
    sizes = {"encoder_hidden": width, "encoder_output": width, "predictor_hidden": width, "joint_dim": width}
    model = dataclasses.replace(config.model, predictor_output=width, simple_joint=bool(prune_range), **sizes)
    trainer = Trainer(dataclasses.replace(config, data=data, model=model))
    first_loss = trainer.train_step(next(trainer.step_batches()))["loss"]
    trainer.fit()
    runtime = TorchRuntime(trainer.model)
    result = evaluate(runtime, config.feature, trainer.tokenizer, utterances, config.decode)
    assert result.rates.wer == 0.0, result.transcripts
    batch = next(trainer.step_batches())[0]
    outputs = trainer.model(batch.features, batch.feature_lengths, batch.targets)
    final_loss = rnnt_loss(trainer.model, outputs, batch.targets, batch.target_lengths).mean().item()
    assert final_loss < 0.05 * first_loss


def _flagfile(tmp_path: Path, config: RunConfig, name: str) -> Path:
    """Write `config` as a flagfile for train.py."""
    lines = []
    for section in dataclasses.fields(config):
        for field in dataclasses.fields(getattr(config, section.name)):
            if field.metadata.get("flag", True):
                value = getattr(getattr(config, section.name), field.name)
                lines.append(f"--{field.name}={str(value).lower() if isinstance(value, bool) else value}")
    lines += [f"--name={name}", "--num_threads=1"]
    path = tmp_path / f"{name}.flags"
    path.write_text("\n".join(lines) + "\n")
    return path


def _train(flagfile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "train.py", f"--flagfile={flagfile}", *extra]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)


def _final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return ckpt.read_checkpoint(ckpt.step_checkpoints(run_dir / "models")[-1])["model"]


def test_resume_after_sigkill_equals_uninterrupted(tmp_path: Path, tiny_corpus: Path) -> None:
    config = tiny_run_config(tmp_path, tiny_corpus, max_steps=24, checkpoint_every=3)
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, encoder_dropout=0.2))
    straight = _train(_flagfile(tmp_path, config, "straight"))
    assert straight.returncode == 0, straight.stderr[-2000:]

    flagfile = _flagfile(tmp_path, config, "killed")
    run_dir = tmp_path / "logs" / "killed"
    process = subprocess.Popen([sys.executable, "train.py", f"--flagfile={flagfile}"], cwd=REPO)
    deadline = time.monotonic() + KILL_TIMEOUT_S
    while not ckpt.step_checkpoints(run_dir / "models") and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    killed_at = int(ckpt.step_checkpoints(run_dir / "models")[-1].stem)
    assert killed_at < config.train.max_steps, "the run finished before it could be killed"

    resumed = _train(flagfile, "--mode=resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    expected, actual = _final_weights(tmp_path / "logs" / "straight"), _final_weights(run_dir)
    for name, tensor in expected.items():
        assert torch.equal(tensor, actual[name]), name


def test_two_ranks_equal_one_rank_with_the_whole_batch(tmp_path: Path, tiny_corpus: Path) -> None:
    train_changes = {"max_steps": 3, "optimizer": "sgd", "lr": 0.05, "warmup_steps": 1, "batch_seconds": 24.0}
    config = tiny_run_config(tmp_path, tiny_corpus, **train_changes)
    one = _train(_flagfile(tmp_path, config, "one"))
    assert one.returncode == 0, one.stderr[-2000:]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533"]
    two = subprocess.run(
        [*torchrun, "train.py", f"--flagfile={_flagfile(tmp_path, config, 'two')}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    one_weights, two_weights = (
        _final_weights(tmp_path / "logs" / "one"),
        _final_weights(tmp_path / "logs" / "two"),
    )
    assert any(not torch.equal(w, one_weights[n]) for n, w in _initial_weights(config).items()), (
        "nothing trained"
    )
    for name, tensor in one_weights.items():
        torch.testing.assert_close(two_weights[name], tensor, rtol=1e-4, atol=1e-5, msg=name)
    assert _loss(config, one_weights) == pytest.approx(_loss(config, two_weights), rel=1e-4)

    # The same two ranks launched by Lightning Fabric run the same loop: the same weights.
    fabric = [sys.executable, "lightning.py", "--devices=2", "--accelerator=cpu"]
    launched = subprocess.run(
        [*fabric, f"--flagfile={_flagfile(tmp_path, config, 'fabric')}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "MASTER_PORT": "29534"},
    )
    assert launched.returncode == 0, launched.stderr[-3000:]
    fabric_weights = _final_weights(tmp_path / "logs" / "fabric")
    for name, tensor in two_weights.items():
        assert torch.equal(fabric_weights[name], tensor), name


def _trainer(config: RunConfig, name: str) -> Trainer:
    return Trainer(dataclasses.replace(config, train=dataclasses.replace(config.train, name=name)))


def _initial_weights(config: RunConfig) -> dict[str, torch.Tensor]:
    return _trainer(config, "init").model.state_dict()


def _loss(config: RunConfig, weights: dict[str, torch.Tensor]) -> float:
    """Mean RNN-T loss of `weights` on the first four training utterances."""
    trainer = _trainer(config, "eval")
    trainer.model.load_state_dict(weights)
    dataset = UtteranceDataset(trainer.train_utterances, config.feature, trainer.tokenizer)
    batch = collate([dataset[(index, 0)] for index in range(4)])
    assert batch is not None
    with torch.no_grad():
        outputs = trainer.model(batch.features, batch.feature_lengths, batch.targets)
        return rnnt_loss(trainer.model, outputs, batch.targets, batch.target_lengths).mean().item()


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_an_amp_the_cpu_lstm_cannot_run_is_refused_before_training(amp: str) -> None:
    """oneDNN has no bf16/fp16 LSTM on CPUs without AVX512 (this CI's): one line up front, not a
    traceback at the first step. Where it has one, an LSTM step really runs in it."""
    cpu = torch.device("cpu")
    check_lstm_amp(cpu, "none")
    try:
        check_lstm_amp(cpu, amp)
    except ValueError as error:
        assert f"--amp={amp}: this cpu's LSTM cannot run in it" in str(error)
        return
    with torch.autocast("cpu", dtype=torch.bfloat16 if amp == "bf16" else torch.float16):
        out, _ = torch.nn.LSTM(8, 8, batch_first=True)(torch.randn(2, 5, 8))
    assert out.dtype != torch.float32


@pytest.mark.parametrize("native", [True, False])
def test_amp_auto_is_bf16_only_where_the_cpu_computes_it_natively(
    monkeypatch: pytest.MonkeyPatch, native: bool
) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    cpu_native = native_bf16(torch.device("cpu"))
    assert cpu_native == native
    assert resolve_amp("auto", cpu_native) == ("bf16" if native else "none")
    assert resolve_amp("bf16", cpu_native) == "bf16"  # asked for explicitly: kept, even if emulated
    assert resolve_amp("none", cpu_native) == "none"
    with pytest.raises(ValueError, match="unknown amp"):
        resolve_amp("fp8", cpu_native)


def _benchmark_training(tmp_path: Path, corpus: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "tools/benchmark_training.py",
        "--flagfile=flagfiles/smoke.txt",
        f"--train_manifests={corpus / 'train'}",
        f"--output={tmp_path / 'training.json'}",
        *args,
    ]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False, timeout=300)


def test_training_benchmark_compares_losses_on_the_same_batches(tmp_path: Path, tiny_corpus: Path) -> None:
    result = _benchmark_training(
        tmp_path, tiny_corpus, "--variants=full,pruned:3", "--steps=2", "--skip_steps=1"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((tmp_path / "training.json").read_text())
    assert summary["same_batches"] is True
    full, pruned = summary["rows"]
    assert (full["variant"], pruned["variant"], full["speedup"]) == ("full", "pruned:3", 1.0)
    assert full["audio_s_per_step"] == pruned["audio_s_per_step"] > 0
    assert pruned["parameters"] > full["parameters"]  # the simple joint
    # Character targets: far more than 3 rows per frame, so the pruned logits are far smaller.
    assert pruned["logits_mb_max"] < full["logits_mb_max"] / 4
    assert all(row["loss_last"] > 0 for row in summary["rows"])

    bad = _benchmark_training(tmp_path, tiny_corpus, "--variants=pruned:1")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "expected 'full' or 'pruned:R' with R >= 2" in bad.stderr


def test_init_checkpoint_starts_from_its_weights_and_tokenizer(tmp_path: Path, tiny_corpus: Path) -> None:
    config = tiny_run_config(tmp_path, tiny_corpus, max_steps=2, checkpoint_every=2)
    source = _trainer(config, "source")
    source.fit()
    source_path = ckpt.step_checkpoints(source.models_dir)[-1]
    # A tokenizer setting this run would otherwise train differently: the checkpoint's wins.
    tuned_config = dataclasses.replace(
        config,
        tokenizer=dataclasses.replace(config.tokenizer, tokenizer_kind="bpe", vocab_size=40),
        train=dataclasses.replace(config.train, init_checkpoint=str(source_path)),
    )
    tuned = _trainer(tuned_config, "tuned")
    assert tuned.tokenizer.model_proto == source.tokenizer.model_proto
    assert (tuned.config.run_dir / "tokenizer.model").read_bytes() == tuned.tokenizer.model_proto
    for name, tensor in source.model.state_dict().items():
        assert torch.equal(tuned.model.state_dict()[name], tensor), name
    assert tuned.state.step == 0
    wider = dataclasses.replace(tuned_config, model=dataclasses.replace(config.model, encoder_hidden=64))
    with pytest.raises(ckpt.CheckpointError, match=r"another model than this run's: encoder_hidden=48"):
        _trainer(wider, "wider")
    tuned.fit()
    source_path.unlink()  # resuming the fine-tuned run needs only its own checkpoints
    resumed = _trainer(tuned_config, "tuned")
    assert resumed.resume_latest() and resumed.state.step == tuned.state.step


def _sum_with_a_rank_missing_a_gradient(rank: int, port: int, results: Any) -> None:
    torch.distributed.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2
    )
    model = torch.nn.Linear(2, 1)
    if rank == 0:  # rank 1's share of the step had no readable audio: no gradients at all
        model(torch.ones(1, 2)).sum().backward()
    sum_gradients(model, Distributed(rank=rank, world=2))
    results[rank] = [p.grad.tolist() for p in model.parameters()]  # type: ignore[union-attr]
    torch.distributed.destroy_process_group()


def test_summing_gradients_when_a_rank_has_none() -> None:
    """The rank without gradients joins with zeros: both end with rank 0's, none waits forever."""
    port = 29534
    with torch.multiprocessing.Manager() as manager:
        results = manager.dict()
        torch.multiprocessing.spawn(_sum_with_a_rank_missing_a_gradient, args=(port, results), nprocs=2)
        assert results[0] == results[1] == [[[1.0, 1.0]], [1.0]]


def test_resuming_mid_epoch_on_another_rank_count_is_refused() -> None:
    check_resume_world(2, Distributed(world=2), mid_epoch=True, source="a.pt")
    check_resume_world(2, Distributed(world=4), mid_epoch=False, source="a.pt")  # an epoch boundary
    check_resume_world(0, Distributed(world=4), mid_epoch=True, source="a.pt")  # not recorded
    with pytest.raises(ValueError, match=r"a\.pt: saved mid-epoch by 2 ranks; resume it on 2, not 4"):
        check_resume_world(2, Distributed(world=4), mid_epoch=True, source="a.pt")
