#!/usr/bin/env bash
# Installs Jupyter and Chromium from Debian and registers the tslab (TypeScript) kernel.
# Safe to run again: it installs only the missing packages and rewrites the kernel spec.
# Package installs need root. Registering the kernel does not: as a normal user tslab
# registers it in the per-user kernel folder.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
debian_packages=(jupyter-nbconvert jupyter-client python3-nbclient python3-ipykernel chromium)

missing_packages=()
for package in "${debian_packages[@]}"; do
  status="$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)"
  if [[ "$status" != "install ok installed" ]]; then
    missing_packages+=("$package")
  fi
done

if ((${#missing_packages[@]} > 0)); then
  if [[ "$(id -u)" != 0 ]]; then
    echo "setup-jupyter: missing Debian packages: ${missing_packages[*]}." >&2
    echo "setup-jupyter: run this script as root, or install them with apt-get." >&2
    exit 1
  fi
  echo "setup-jupyter: installing ${missing_packages[*]}"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing_packages[@]}"
else
  echo "setup-jupyter: Debian packages already installed: ${debian_packages[*]}"
fi

tslab_bin="$repo_root/node_modules/.bin/tslab"
if [[ ! -x "$tslab_bin" ]]; then
  echo "setup-jupyter: $tslab_bin not found. Run 'npm ci' (or 'npm install') in $repo_root first." >&2
  exit 1
fi

# The kernel spec starts the command `tslab` found on PATH, so the process that starts the
# kernel must put node_modules/.bin on PATH (scripts/reports.ts does). /usr/bin/python3 is Debian's
# interpreter, the one that has jupyter_client, even when another python3 comes first on PATH.
echo "setup-jupyter: registering the tslab kernel with /usr/bin/python3"
"$tslab_bin" install --python=/usr/bin/python3

# stderr is dropped: `jupyter kernelspec list` can print debugpy's "frozen modules" warning there.
kernels="$(jupyter kernelspec list 2>/dev/null)"
echo "$kernels"
if ! grep -qE '^\s*tslab\s' <<<"$kernels"; then
  echo "setup-jupyter: 'jupyter kernelspec list' does not list tslab after the install." >&2
  exit 1
fi
