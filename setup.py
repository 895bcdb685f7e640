"""Build of trugrade._C from csrc/, linking the system libraries found with pkg-config.

A missing library stops the build with one sentence naming the Debian package to install.
"""
import glob
import os
import shlex
import subprocess
import sys

from setuptools import Extension, setup

# pkg-config name -> Debian package that provides it
SYSTEM_LIBRARIES = {
    "openblas": "libopenblas-dev",
    "libpng": "libpng-dev",
    "libjpeg": "libjpeg62-turbo-dev",
    "yaml-0.1": "libyaml-dev",
    "zlib": "zlib1g-dev",
}

# Folders of csrc/ that are not part of the extension (plain C tests, fuzz harnesses).
NOT_IN_EXTENSION = ("csrc/tests/", "csrc/fuzz/")


def pkg_config(name, debian_package):
    try:
        out = subprocess.run(["pkg-config", "--cflags", "--libs", name], check=True, capture_output=True, text=True)
    except FileNotFoundError:
        sys.exit("trugrade build: pkg-config is missing; install it with `apt-get install pkg-config`.")
    except subprocess.CalledProcessError:
        sys.exit(f"trugrade build: the system library '{name}' was not found; install it with "
                 f"`apt-get install {debian_package}`.")
    return shlex.split(out.stdout)


def extension():
    flags = []
    for name, package in SYSTEM_LIBRARIES.items():
        flags += pkg_config(name, package)
    include_dirs = [f[2:] for f in flags if f.startswith("-I")]
    library_dirs = [f[2:] for f in flags if f.startswith("-L")]
    libraries = [f[2:] for f in flags if f.startswith("-l")]
    sources = sorted(
        path for path in glob.glob("csrc/**/*.c", recursive=True)
        if not path.startswith(NOT_IN_EXTENSION)
    )
    debug = os.environ.get("TRUGRADE_DEBUG") == "1"
    compile_args = ["-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Wno-unused-parameter",
                    "-fno-strict-aliasing", "-pthread"]
    compile_args += ["-O0", "-g"] if debug else ["-O3", "-g1"]
    return Extension(
        "trugrade._C",
        sources=sources,
        include_dirs=include_dirs,
        library_dirs=library_dirs,
        runtime_library_dirs=library_dirs,
        libraries=libraries + ["m"],
        extra_compile_args=compile_args,
        extra_link_args=["-pthread"],
    )


setup(ext_modules=[extension()])
