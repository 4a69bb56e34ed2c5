//! `allpeers-media-worker`: one sandboxed media extraction worker speaking length-prefixed
//! frames on stdin/stdout (see `allpeers_media::worker`). Started by `allpeers_media::Extractor`.

fn main() {
    std::process::exit(allpeers_media::worker::run_stdio());
}
