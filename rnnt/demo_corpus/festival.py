"""A festival process kept per render worker: text2wave's synthesis without its start-up."""

from __future__ import annotations

import select
import subprocess
from pathlib import Path

SYNTH_TIMEOUT_S = 60  # longest wait for one utterance from any engine

# What `text2wave TEXT -o WAV` does after its -eval options: synthesise the file utterance by
# utterance (`tts_file`), write each part's samples behind one RIFF header, then fix the header's
# sample count. Kept in one festival process per render worker, it gives text2wave's audio
# without text2wave's start (~0.3 s, most of a sentence's cost: 14 of the corpus's 23 minutes).
_FESTIVAL_DEFINITIONS = """
(define (rnnt_save_part utt)
  (if (eq? rnnt_num_samples 0)
      (wave.save.header rnnt_fp (utt.wave utt) 'riff nil (list (list "numsamples" 0))))
  (set! rnnt_num_samples (+ rnnt_num_samples (get_param 'num_samples (wave.info (utt.wave utt)) 0)))
  (wave.save.data.fp (utt.wave utt) rnnt_fp 'riff nil)
  (set! rnnt_last_utt utt))
(define (rnnt_text2wave text_file wav_file)
  (set! rnnt_num_samples 0)
  (set! rnnt_fp (fopen wav_file "wb"))
  (set! tts_hooks (list utt.synth rnnt_save_part))
  (tts_file text_file (tts_find_text_mode text_file auto-text-mode-alist))
  (fseek rnnt_fp 0 0)
  (wave.save.header rnnt_fp (utt.wave rnnt_last_utt) 'riff nil (list (list "numsamples" rnnt_num_samples)))
  (fclose rnnt_fp))
"""
# Festival's stdout is block-buffered in a pipe; its stderr is not, so the end of each job is
# announced there.
_FESTIVAL_DONE = "rnnt-festival-done"
# Festival's own errors, and MBROLA's when a database lacks a diphone the text needs ("Fatal
# error: Unknown recovery for ax-ax segment", us3): MBROLA then stops and festival writes the
# audio so far, a sentence cut short under its full transcript.
_FESTIVAL_ERRORS = ("SIOD ERROR", "Fatal error")


class FestivalProcess:
    """A `festival --pipe` process that synthesises text files one after another."""

    def __init__(self) -> None:
        # Unbuffered: a raw stream's readline takes no more than its line, so `select` sees the
        # rest (a buffered reader could hold the next line where `select` cannot see it).
        self._process = subprocess.Popen(
            ["festival", "--pipe"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            bufsize=0,
        )
        self._send([_FESTIVAL_DEFINITIONS])

    def synthesize(self, setup: list[str], text_file: Path, wav: Path) -> None:
        """Runs the `setup` expressions, then text2wave's synthesis of `text_file` into `wav`."""
        wav.unlink(missing_ok=True)
        messages = self._send([*setup, f"(rnnt_text2wave {_scheme_string(text_file)} {_scheme_string(wav)})"])
        errors = [m for m in messages if m.startswith(_FESTIVAL_ERRORS)]
        if errors or not wav.is_file():
            # An error skips one expression and festival goes on (a bad voice would fall back to
            # the default one): a fresh process for the next job, and no audio from this one.
            self.stop()
            wav.unlink(missing_ok=True)
            raise RuntimeError(f"festival: {' '.join(errors or messages)[:200] or 'no audio written'}")

    def _send(self, expressions: list[str]) -> list[str]:
        """Evaluates `expressions`; returns what festival wrote to stderr meanwhile."""
        assert self._process.stdin is not None and self._process.stderr is not None
        script = "\n".join([*expressions, f'(format stderr "{_FESTIVAL_DONE}\\n")']) + "\n"
        self._process.stdin.write(script.encode())
        messages: list[str] = []
        while True:
            ready, _, _ = select.select([self._process.stderr], [], [], SYNTH_TIMEOUT_S)
            raw = self._process.stderr.readline() if ready else b""
            if not raw:  # timed out, or festival exited
                self.stop()
                raise RuntimeError(f"festival stopped answering: {' '.join(messages)[:200]}")
            line = raw.decode(errors="replace").strip()
            if line == _FESTIVAL_DONE:
                return messages
            messages.append(line)

    def alive(self) -> bool:
        return self._process.poll() is None

    def stop(self) -> None:
        self._process.kill()
        self._process.wait()


_festival: FestivalProcess | None = None


def festival_process() -> FestivalProcess:
    """This process's festival, started on first use (and again if it died)."""
    global _festival
    if _festival is None or not _festival.alive():
        _festival = FestivalProcess()
    return _festival


def _scheme_string(path: Path) -> str:
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'
