#!/usr/bin/env bash
# Install DubStudio into .venv on a Debian machine: `packaging/install.sh [EXTRA]`.
#
# EXTRA is a pyproject extra: render (headless), gui (the editor, default), train, or dev
# (everything plus the test tools); `base` installs only the core (subtitles, projects, `info`).
# Debian packages from packaging/debian-packages.txt that are missing are installed with apt-get
# (through sudo when not run as root); `train` and `dev` also install the training corpus's
# RHVoice and Pico voices from packaging/debian-packages-nonfree.txt, enabling Debian's contrib
# and non-free components for them.
set -euo pipefail

extra="${1:-gui}"
case "$extra" in
  base | render | gui | train | dev) ;;
  *) echo "usage: $0 [base|render|gui|train|dev]" >&2; exit 2 ;;
esac

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

lists=(packaging/debian-packages.txt)
if [ "$extra" = train ] || [ "$extra" = dev ]; then
  lists+=(packaging/debian-packages-nonfree.txt)
fi
mapfile -t wanted < <(cat "${lists[@]}" | grep -v '^\s*#' | tr -d ' \t' | grep -v '^$')
missing=()
for pkg in "${wanted[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
if ((${#missing[@]})); then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "Installing Debian packages: ${missing[*]}"
  if [ "${#lists[@]}" -gt 1 ] && [ -d /etc/apt/sources.list.d ] \
    && ! grep -rqsE '^(Components:.*non-free|deb .* non-free)' /etc/apt/sources.list /etc/apt/sources.list.d; then
    codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")"
    echo "Enabling Debian contrib and non-free ($codename) for the training voices"
    printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: %s\nComponents: contrib non-free\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$codename" | $sudo tee /etc/apt/sources.list.d/dubstudio-nonfree.sources >/dev/null
  fi
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# setuptools >= 81 dropped pkg_resources, which some speech packages still import.
.venv/bin/python -m pip install --upgrade pip 'setuptools<81' wheel
if [ "$extra" = base ]; then
  .venv/bin/python -m pip install -e .
else
  .venv/bin/python -m pip install -e ".[${extra}]"
fi
echo "DubStudio installed in $root/.venv (extra: $extra)."
