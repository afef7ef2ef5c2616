#!/usr/bin/env bash
# Packs Open3D (the descriptor benchmarks' peer) for the GPU machine, which has no package
# registry: issue 7 asks for GPU vs Open3D on the same machine, and the device tool carries at
# most 64 MiB. The open3d-cpu wheel (100 MB, 268 MB unpacked) is trimmed to what
# estimate_normals and compute_fpfh_feature need (the pybind module, its bundled libc++ and TBB,
# the package's __init__ and visualization modules) and xz-compressed to ~40 MB. The optional
# viewers (plotly/dash, mitsuba) and open3d.ml are left out and their imports made optional in
# the copy. Nothing here is committed: the archive goes to gpu_peers/ (git-ignored).
#
#   bash scripts/pack_open3d_for_gpu.sh [python-version, default 3.12]
#   then carry gpu_peers/open3d.tar.xz with the build; gpu_check.sh unpacks it when present.
set -euo pipefail
pyver=${1:-3.12}
repo="$(cd "$(dirname "$0")/.." && pwd)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python -m pip download -q open3d-cpu==0.19.0 --no-deps --only-binary=:all: --python-version "$pyver" -d "$work/wheel"
mkdir -p "$work/x" "$work/min/open3d/cpu"
(cd "$work/x" && python -m zipfile -e "$work"/wheel/*.whl .)
src="$work/x/open3d" dst="$work/min/open3d"
cp "$src"/__init__.py "$src"/_build_config.py "$src"/lib*.so* "$dst"/
cp "$src"/cpu/pybind.cpython-*.so "$dst"/cpu/
cp -r "$src"/visualization "$dst"/
python - "$dst" <<'EOF'
import sys, pathlib
dst = pathlib.Path(sys.argv[1])
init = dst / "__init__.py"
s = init.read_text()
assert "\nimport open3d.ml\n" in s, "open3d/__init__.py changed: revisit this script"
init.write_text(s.replace("\nimport open3d.ml\n", "\n# open3d.ml left out (benchmark copy)\n"))
vis = dst / "visualization" / "__init__.py"
out = []
for line in vis.read_text().splitlines():
    if line.startswith(("from .draw_plotly import", "from .to_mitsuba import")):
        out += ["try:", "    " + line, "except ImportError:", "    pass"]
    else:
        out.append(line)
vis.write_text("\n".join(out) + "\n")
EOF
# The system libraries the pybind module links beyond glibc (the GPU image had no libGL.so.1 on
# 2026-11-27), copied from this machine; gpu_check.sh drops the ones the GPU machine has.
mkdir -p "$dst/_syslibs"
for lib in $(ldd "$dst"/cpu/pybind.cpython-*.so | awk '$3 ~ /^\/(usr\/)?lib/ {print $3}'); do
  case "$(basename "$lib")" in
    libc.so*|libm.so*|libdl.so*|librt.so*|libpthread.so*|libstdc++.so*|libgcc_s.so*) ;;
    *) cp -L "$lib" "$dst/_syslibs/" ;;
  esac
done
ls "$dst/_syslibs"
mkdir -p "$repo/gpu_peers"
tar cJf "$repo/gpu_peers/open3d.tar.xz" -C "$work/min" open3d
ls -la "$repo/gpu_peers/open3d.tar.xz"
