"""train.py on bad input: one clear line and a non-zero exit, or skip-and-count; never a
traceback, never a crash after training started."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from rnnt.corpus import read_librispeech

from .conftest import REPO


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "train.py", *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False, timeout=300)


def _assert_clean_failure(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    assert expected in result.stderr, result.stderr


def _smoke(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return _run("--flagfile=flagfiles/smoke.txt", f"--logs_root={tmp_path / 'logs'}", *args)


def test_missing_flagfile_and_unknown_flag(tmp_path: Path) -> None:
    _assert_clean_failure(_run(f"--flagfile={tmp_path / 'nope.txt'}"), "Unable to open flagfile")
    _assert_clean_failure(_run("--no_such_flag=1"), "Unknown command line flag 'no_such_flag'")
    binary = tmp_path / "binary.txt"
    binary.write_bytes(bytes(range(128, 256)))
    _assert_clean_failure(_run(f"--flagfile={binary}"), "a --flagfile is not UTF-8 text")


def test_loss_settings_the_model_cannot_serve_fail_before_training(tmp_path: Path) -> None:
    # No data exists at these paths: the check must come before anything is read.
    missing = f"--train_manifests={tmp_path / 'none.jsonl'}"
    _assert_clean_failure(_smoke(tmp_path, missing, "--prune_range=5"), "--prune_range needs --simple_joint")
    _assert_clean_failure(_smoke(tmp_path, missing, "--simple_joint", "--prune_range=1"), "at least 2")
    _assert_clean_failure(_smoke(tmp_path, missing, "--ctc_weight=0.3"), "--ctc_weight needs --ctc_head")
    _assert_clean_failure(_smoke(tmp_path, missing, "--hop_length=0"), "hop_length must be positive, got 0")
    _assert_clean_failure(_smoke(tmp_path, missing, "stray"), "unexpected arguments: stray")


def test_manifest_errors_name_file_and_line(tmp_path: Path, tiny_corpus: Path) -> None:
    good = read_librispeech(tiny_corpus / "train")[0]
    manifest = tmp_path / "bad.jsonl"
    manifest.write_text(json.dumps({"audio": good.audio, "text": good.text}) + "\nnot json\n")
    _assert_clean_failure(_smoke(tmp_path, f"--train_manifests={manifest}"), f"{manifest}:2: not a JSON line")
    manifest.write_text(json.dumps({"audio": str(tmp_path / "missing.flac"), "text": "hello"}) + "\n")
    _assert_clean_failure(_smoke(tmp_path, f"--train_manifests={manifest}"), f"{manifest}:1:")
    _assert_clean_failure(
        _smoke(tmp_path, f"--train_manifests={tmp_path / 'none.jsonl'}"), "no such manifest"
    )
    # Nothing left to train on: stopped before a tokenizer or a model is built.
    manifest.write_text(json.dumps({"audio": good.audio, "text": "", "duration": good.duration}) + "\n")
    _assert_clean_failure(_smoke(tmp_path, f"--train_manifests={manifest}"), "no training utterance has text")
    gone = {"audio": str(tmp_path / "gone.flac"), "text": "hello", "duration": 1.0}
    manifest.write_text(json.dumps(gone) + "\n")
    _assert_clean_failure(
        _smoke(tmp_path, f"--train_manifests={manifest}"), "none of the 1 audio files exists"
    )


def test_bad_utterances_are_skipped_and_counted(tmp_path: Path, tiny_corpus: Path) -> None:
    utterances = read_librispeech(tiny_corpus / "train")
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF" + bytes(range(256)) * 4)
    lines = [{"audio": u.audio, "text": u.text, "duration": u.duration} for u in utterances]
    lines.append({"audio": str(corrupt), "text": "a corrupt file", "duration": 2.0})
    lines.append({"audio": utterances[0].audio, "text": "", "duration": utterances[0].duration})
    manifest = tmp_path / "mixed.jsonl"
    manifest.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    result = _smoke(tmp_path, f"--train_manifests={manifest}", "--dev_manifest=", "--max_steps=4")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"skipped 1 of {len(lines)} utterances" in result.stderr
    assert "corrupt.wav" in result.stderr and "skipped utterance" in result.stderr
    # Every file unreadable: the run stops after a few empty batches instead of "training".
    manifest.write_text(json.dumps(lines[-2]) + "\n")
    result = _smoke(tmp_path, f"--train_manifests={manifest}", "--dev_manifest=", "--name=unreadable")
    _assert_clean_failure(result, "no utterance of the last 5 batches could be read")


def test_refuses_to_overwrite_a_run_and_bad_eval_checkpoint(tmp_path: Path, tiny_corpus: Path) -> None:
    data = [
        f"--train_manifests={tiny_corpus / 'train'}",
        "--dev_manifest=",
        "--max_steps=2",
        "--checkpoint_every=2",
    ]
    assert _smoke(tmp_path, *data).returncode == 0
    _assert_clean_failure(_smoke(tmp_path, *data), "already has checkpoints: use --mode=resume")
    _assert_clean_failure(_run("--mode=eval", f"--checkpoint={tmp_path / 'x.pt'}"), "no such checkpoint")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    _assert_clean_failure(_run("--mode=eval", f"--checkpoint={garbage}"), "not a readable checkpoint")

    checkpoint = next((tmp_path / "logs" / "smoke" / "models").glob("*.pt"))
    tuned = [*data, "--name=tuned"]
    _assert_clean_failure(
        _smoke(tmp_path, *tuned, f"--init_checkpoint={tmp_path / 'x.pt'}"), "no such checkpoint"
    )
    result = _smoke(tmp_path, *tuned, f"--init_checkpoint={checkpoint}", "--encoder_layers=3")
    _assert_clean_failure(result, "another model than this run's: encoder_layers=")
    result = _smoke(tmp_path, *data, "--mode=resume", "--max_steps=4", "--encoder_layers=3")
    _assert_clean_failure(result, "another model than this run's: encoder_layers=")
    utterances = read_librispeech(tiny_corpus / "dev")
    lines = [{"id": u.id, "audio": u.audio, "text": u.text, "duration": u.duration} for u in utterances]
    missing = [
        {**line, "id": f"9999-1-{i}", "audio": str(tmp_path / f"gone{i}.flac"), "speaker": "absent"}
        for i, line in enumerate(lines)
    ]
    manifest = tmp_path / "eval.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines + missing[:1]))
    transcripts = tmp_path / "out" / "transcripts.jsonl"
    result = _run(
        "--mode=eval",
        f"--checkpoint={checkpoint}",
        f"--eval_set={manifest}",
        "--per_speaker",
        f"--transcripts={transcripts}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (
        f"({len(lines) + 1} utterances" in result.stdout and "1 unreadable scored as empty" in result.stdout
    )
    assert re.search(r"; sub \d+\.\d\d% del \d+\.\d\d% ins \d+\.\d\d%\)", result.stdout)
    for speaker in {u.id.split("-")[0] for u in utterances}:
        assert f"speaker {speaker}: WER" in result.stdout
    # The manifest's speaker field, not the id's first field; its audio is missing: all deletions.
    assert "speaker absent: WER 100.00%" in result.stdout and "speaker 9999" not in result.stdout
    written = [json.loads(line) for line in transcripts.read_text().splitlines()]
    ensemble = _run(
        "--mode=eval",
        f"--checkpoint={checkpoint}",
        f"--eval_set={manifest}",
        "--ensemble_speeds=0.9,1.1",
        "--ensemble_warps=0.95,1.0",
    )
    assert ensemble.returncode == 0 and f"({len(lines) + 1} utterances" in ensemble.stdout, ensemble.stderr[
        -2000:
    ]
    for flag, words in [
        ("--ensemble_speeds=0.9,x", "--ensemble_speeds: not a list of numbers: '0.9,x'"),
        ("--ensemble_warps=0,1", "speeds and warps must be numbers > 0"),
        ("--ensemble_speeds=", "--ensemble_speeds: needs at least one number"),
    ]:
        result = _run("--mode=eval", f"--checkpoint={checkpoint}", f"--eval_set={manifest}", flag)
        _assert_clean_failure(result, words)
    result = _run(
        "--mode=eval", f"--checkpoint={checkpoint}", f"--eval_set={manifest}", f"--transcripts={tmp_path}"
    )
    _assert_clean_failure(result, "Is a directory")
    assert sorted(t["id"] for t in written) == sorted([*(u.id for u in utterances), "9999-1-0"])
    manifest.write_text("".join(json.dumps(line) + "\n" for line in missing))
    result = _run("--mode=eval", f"--checkpoint={checkpoint}", f"--eval_set={manifest}")
    _assert_clean_failure(result, f"none of the {len(missing)} utterances' audio could be read")


def test_summary_prints_the_parameter_count() -> None:
    result = _run("--flagfile=flagfiles/E4D1.txt", "--mode=summary")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "parameters: 3341536"


def test_time_limit_stops_with_an_evaluation_and_a_checkpoint(tmp_path: Path, tiny_corpus: Path) -> None:
    result = _smoke(
        tmp_path,
        f"--train_manifests={tiny_corpus / 'train'}",
        f"--dev_manifest={tiny_corpus / 'dev'}",
        "--max_minutes=0.0001",
        "--eval_every=100",
        "--checkpoint_every=100",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "time limit of 0.0 minutes reached at step 1" in result.stderr
    assert "step 1: dev WER" in result.stderr
    assert (tmp_path / "logs" / "smoke" / "models" / "1.pt").is_file()
