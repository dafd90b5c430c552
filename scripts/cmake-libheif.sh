#!/bin/sh
# The cmake that cmake-rs runs (`CMAKE` in .cargo/config.toml). libheif-sys configures the
# vendored libheif with every codec it can find on the build machine; for libheif only, this
# turns off all but the decoders imgpipe ships (libde265 for HEVC, dav1d for AV1), so the
# binary links the same codecs whatever else is installed (no encoders, no libjpeg beside the
# static libjpeg-turbo). Every other cmake call passes through unchanged.
if [ -f "$1/CMakeLists.txt" ] && grep -q '^project(libheif ' "$1/CMakeLists.txt"; then
  exec cmake "$@" -DWITH_LIBDE265=ON -DWITH_DAV1D=ON \
    -DWITH_AOM_DECODER=OFF -DWITH_AOM_ENCODER=OFF -DWITH_X265=OFF -DWITH_X264=OFF \
    -DWITH_RAV1E=OFF -DWITH_SvtEnc=OFF -DWITH_KVAZAAR=OFF -DWITH_JPEG_DECODER=OFF \
    -DWITH_JPEG_ENCODER=OFF -DWITH_OpenJPEG_DECODER=OFF -DWITH_OpenJPEG_ENCODER=OFF \
    -DWITH_OPENJPH_ENCODER=OFF -DWITH_OpenH264_DECODER=OFF -DWITH_FFMPEG_DECODER=OFF \
    -DWITH_UVG266=OFF -DWITH_VVDEC=OFF -DWITH_VVENC=OFF -DWITH_LIBSHARPYUV=OFF
fi
exec cmake "$@"
