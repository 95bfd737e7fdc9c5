"""Train, resume, evaluate or summarise a transducer from a flagfile.

python train.py --flagfile=flagfiles/demo.txt                 # train from scratch
python train.py --flagfile=flagfiles/demo.txt --mode=resume   # continue the latest checkpoint
python train.py --mode=eval --checkpoint=PATH [--eval_set=...] [--ensemble_speeds=0.9,1.0,1.1]
python train.py --flagfile=flagfiles/E6D2.txt --mode=summary
torchrun --nproc_per_node=2 train.py --flagfile=...           # data parallel (gloo on CPU)
"""

from __future__ import annotations

import logging
import os

import torch
import torch.distributed as dist
from absl import flags

from rnnt import checkpoint as ckpt
from rnnt import cli
from rnnt.config import RunConfig, model_config_for_summary
from rnnt.corpus import read_corpus
from rnnt.distributed import Distributed
from rnnt.evaluation import View, evaluate, rates_by_speaker, write_transcripts
from rnnt.flags import decode_config_from_flags, fusion_from_flags, run_config_from_flags, write_flagfile
from rnnt.model import Transducer, count_parameters
from rnnt.runtimes.pytorch import TorchRuntime
from rnnt.scoring import phrase_recall
from rnnt.training import train_run

_MODE = flags.DEFINE_enum("mode", "train", ["train", "resume", "eval", "summary"], "what to do")
_CHECKPOINT = flags.DEFINE_string("checkpoint", "", "checkpoint for --mode=eval")
_EVAL_SET = flags.DEFINE_string("eval_set", "", "manifest or LibriSpeech dir for --mode=eval (default: test)")
_PER_SPEAKER = flags.DEFINE_bool("per_speaker", False, "--mode=eval also prints each speaker's WER/CER")
_ENSEMBLE_SPEEDS = flags.DEFINE_list(
    "ensemble_speeds",
    ["1.0"],
    "--mode=eval: decode each utterance played at each of these speeds (and --ensemble_warps), "
    "keeping the best of the pooled beams (e.g. 0.85,0.9,0.95,1.0,1.05,1.1,1.15: 7x the search; "
    "README, 'An ensemble')",
)
_ENSEMBLE_WARPS = flags.DEFINE_list(
    "ensemble_warps", ["1.0"], "--mode=eval: ... and at each of these VTLP warps (see --ensemble_speeds)"
)
_TRANSCRIPTS = flags.DEFINE_string("transcripts", "", "--mode=eval writes id/reference/hypothesis JSONL here")

log = logging.getLogger("train")


def main(argv: list[str]) -> None:
    del argv  # positional arguments are refused by cli.run
    config = run_config_from_flags()
    if config.train.num_threads:
        torch.set_num_threads(config.train.num_threads)
    if _MODE.value == "summary":
        model = Transducer(model_config_for_summary(config))
        print(model)
        print(f"parameters: {count_parameters(model)}")
    elif _MODE.value == "eval":
        run_eval(config)
    else:
        train(config, resume=_MODE.value == "resume")


def run_eval(config: RunConfig) -> None:
    if not _CHECKPOINT.value:
        raise ValueError("--mode=eval needs --checkpoint=PATH")
    views = [View(speed, warp) for speed in _numbers(_ENSEMBLE_SPEEDS) for warp in _numbers(_ENSEMBLE_WARPS)]
    bundle = ckpt.load_bundle(_CHECKPOINT.value)
    corpus = _EVAL_SET.value or config.data.test_manifest
    if not corpus:
        raise ValueError("--mode=eval needs --eval_set=PATH (or --test_manifest)")
    utterances = [u for u in read_corpus(corpus) if u.text]
    runtime = TorchRuntime(bundle.model)
    decode = decode_config_from_flags(bundle.decode)  # the checkpoint's, as stream.py decodes
    fusion = fusion_from_flags(bundle.tokenizer, decode)
    result = evaluate(
        runtime, bundle.features, bundle.tokenizer, utterances, decode, fusion=fusion, views=views
    )
    rates = result.rates
    unreadable = f", {result.unreadable} unreadable scored as empty" if result.unreadable else ""
    print(
        f"{corpus}: WER {100 * rates.wer:.2f}% CER {100 * rates.cer:.2f}% "
        f"({rates.num_utterances} utterances, {rates.num_words} words{unreadable}; {rates.breakdown()})"
    )
    if fusion.hotwords is not None:
        found = phrase_recall(
            [t.reference for t in result.transcripts],
            [t.hypothesis for t in result.transcripts],
            [phrase.text for phrase in fusion.hotwords.phrases],
        )
        print(
            f"hotwords: {found.found} of {found.total} occurrences in the references recognised, "
            f"{found.false_alarms} more in the hypotheses"
        )
    if _PER_SPEAKER.value:
        for speaker, speaker_rates in rates_by_speaker(result.transcripts).items():
            print(
                f"  speaker {speaker}: WER {100 * speaker_rates.wer:.2f}% CER {100 * speaker_rates.cer:.2f}% "
                f"({speaker_rates.num_utterances} utterances)"
            )
    if _TRANSCRIPTS.value:
        write_transcripts(_TRANSCRIPTS.value, result.transcripts)


def _numbers(flag: flags.FlagHolder[list[str]]) -> list[float]:
    if not flag.value:
        raise ValueError(f"--{flag.name}: needs at least one number (1.0: unchanged)")
    try:
        return [float(value) for value in flag.value]
    except ValueError:
        raise ValueError(f"--{flag.name}: not a list of numbers: {','.join(flag.value)!r}") from None


def train(config: RunConfig, resume: bool) -> None:
    train_run(config, _init_distributed(), resume, lambda: write_flagfile(config.run_dir / "flagfile.txt"))


def _init_distributed() -> Distributed:
    if not dist.is_torchelastic_launched():
        return Distributed()
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


if __name__ == "__main__":
    cli.run(main)
