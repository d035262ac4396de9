"""Build script for the compiled parts; the rest of the metadata is in pyproject.toml.

The extension is optional: without a C compiler the install still succeeds and Vigil runs the
pure-Python depacketizer, PS-over-RTP receiver and PS demuxer (the reference implementations) instead.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "vigil.protocols.rtp._fastdepack",
            ["src/vigil/protocols/rtp/_fastdepack.c"],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        ),
        Extension(
            "vigil.protocols.ps._fastps",
            # The PS/RTP receiver core and the PS demuxer core it feeds in C.
            ["src/vigil/protocols/ps/_fastps.c", "src/vigil/protocols/ps/_psdemux.c"],
            depends=["src/vigil/protocols/ps/_psdemux.h"],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        ),
    ]
)
