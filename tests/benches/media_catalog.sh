#!/bin/bash
# The media catalog's cost, first add vs re-add, with a real daemon: PER copies each of six small real files
# (MP3, FLAC, JPEG, PNG, H.264 MP4, text) made by ffmpeg/sox/ImageMagick. Results: docs/benchmarks.md, "Media".
# Usage: tests/benches/media_catalog.sh   (BIN=path/to/allpeers, PER=50 by default)
set -e
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/allpeers}
PER=${PER:-50}
B=$(mktemp -d /tmp/allpeers-media-bench.XXXXXX)
trap 'rm -rf "$B"' EXIT
mkdir -p "$B/src" "$B/lib" "$B/data"
cd "$B/src"
ffmpeg -hide_banner -loglevel error -f lavfi -i sine=frequency=440 -t 3 -c:a libmp3lame -b:a 128k -metadata title=Tone a.mp3
sox -n -r 44100 -c 2 b.flac synth 3 sine 440
convert -size 1024x768 gradient:red-blue -quality 85 c.jpg
convert -size 640x480 gradient:green-yellow d.png
ffmpeg -hide_banner -loglevel error -f lavfi -i testsrc=size=320x240:rate=25 -t 2 -c:v libx264 -preset ultrafast e.mp4
seq 1 2000 > f.txt
for i in $(seq 1 "$PER"); do for f in a.mp3 b.flac c.jpg d.png e.mp4 f.txt; do cp $f "$B/lib/$i-$f"; done; done
echo "files: $(ls "$B/lib" | wc -l), bytes: $(du -sb "$B/lib" | cut -f1), load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo '{"net": {"quic": "127.0.0.1:0", "tcp": "127.0.0.1:0"}}' > "$B/data/config.json"
export ALLPEERS_DATA_DIR="$B/data"
"$BIN" daemon --notify-ready > "$B/ready.txt" &
DAEMON=$!
for _ in $(seq 1 100); do grep -q READY "$B/ready.txt" 2>/dev/null && break; sleep 0.1; done
for round in first re-add; do
  start=$(date +%s.%N); "$BIN" add "$B/lib"; end=$(date +%s.%N)
  echo "$round: $(echo "$end - $start" | bc) s"
done
"$BIN" stop >/dev/null || kill "$DAEMON"
wait "$DAEMON" || true
