"""Builds the `_C` extension with CMake + Ninja.

The extension does not link libtorch (see DESIGN.md), so the build needs only a C++17 compiler,
pybind11 and, optionally, nvcc. Environment:
  MENTOR3AD_CUDA=0|1        force CUDA off / on (default: on when nvcc is found)
  MENTOR3AD_CUDA_ARCHS      CUDA architectures, default "80;90"
  MENTOR3AD_BUILD_TYPE      CMake build type, default Release
  MENTOR3AD_JOBS            parallel compile jobs (default: ninja's choice)
"""
import os
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


class CMakeExtension(Extension):
    def __init__(self, name: str) -> None:
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext: Extension) -> None:
        import pybind11

        out_dir = Path(self.get_ext_fullpath(ext.name)).resolve().parent
        build_dir = Path(self.build_temp).resolve() / "cmake"
        build_dir.mkdir(parents=True, exist_ok=True)
        cfg = os.environ.get("MENTOR3AD_BUILD_TYPE", "Release")
        args = [
            "cmake", "-S", str(ROOT), "-B", str(build_dir), "-G", "Ninja",
            f"-DCMAKE_BUILD_TYPE={cfg}",
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={out_dir}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
            f"-DMENTOR3AD_VERSION={self.distribution.get_version()}",
        ]
        cuda = os.environ.get("MENTOR3AD_CUDA")
        if cuda is not None:
            args.append(f"-DMENTOR3AD_CUDA={'ON' if cuda not in ('0', 'OFF', 'off', 'false') else 'OFF'}")
        if os.environ.get("MENTOR3AD_CUDA_ARCHS"):
            args.append(f"-DMENTOR3AD_CUDA_ARCHS={os.environ['MENTOR3AD_CUDA_ARCHS']}")
        subprocess.check_call(args)
        build = ["cmake", "--build", str(build_dir)]
        if os.environ.get("MENTOR3AD_JOBS"):
            build += ["-j", os.environ["MENTOR3AD_JOBS"]]
        subprocess.check_call(build)


setup(ext_modules=[CMakeExtension("mentor3ad_ext._C")], cmdclass={"build_ext": CMakeBuild})
