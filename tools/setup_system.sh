#!/usr/bin/env bash
# Install the Debian packages the project needs (TTS engines, audio tools). Idempotent.
set -euo pipefail

# chromium: the caption page is tested in a real headless browser (tests/test_server.py).
PACKAGES=(gcc libc6-dev espeak-ng flite festival festvox-kdlpc16k festvox-us-slt-hts ffmpeg sox fortunes fortunes-min fortune-mod pulseaudio libsndfile1 chromium)
# The demo corpus's train-only voices of more people (MBROLA, festival's don and rab, RHVoice;
# rnnt/demo_corpus/voices.py) are in Debian's contrib and non-free components (licences that
# allow non-commercial use): enabled below in a file of its own.
NON_FREE_PACKAGES=(mbrola mbrola-us1 mbrola-us2 mbrola-us3 mbrola-en1 festvox-don festvox-rablpc16k festvox-us1 festvox-us2 festvox-us3 festvox-en1 rhvoice rhvoice-english)
NON_FREE_SOURCES=/etc/apt/sources.list.d/rnnt-non-free.sources
PACKAGES+=("${NON_FREE_PACKAGES[@]}")

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg -s "$pkg" 2>/dev/null | grep -q '^Status: install ok installed'; then
    missing+=("$pkg")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "system packages: all present"
  exit 0
fi

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  else
    echo "missing packages (${missing[*]}) and not root, no sudo: install them as root" >&2
    exit 1
  fi
fi

echo "installing: ${missing[*]}"
if [[ ! -e $NON_FREE_SOURCES ]]; then
  . /etc/os-release
  echo "enabling Debian's contrib and non-free components for ${VERSION_CODENAME} in $NON_FREE_SOURCES"
  printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: %s\nComponents: contrib non-free\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$VERSION_CODENAME" | "${SUDO[@]}" tee "$NON_FREE_SOURCES" >/dev/null
fi
"${SUDO[@]}" apt-get update
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
