//! Video from the container alone, no decoder: duration, size, codecs, frame rate, creation
//! date. MP4/MOV/3GP go through `mozilla/mp4parse` (Firefox's parser: fallible allocation,
//! fuzzed for years), fed only the `ftyp` and `moov` boxes so the media data is never read;
//! a small walk over the same `moov` bytes names the sample entries mp4parse does not know
//! (HEVC's `hvc1`/`hev1`) and reads `mvhd`'s creation time. Matroska/WebM goes through
//! `matroska-demuxer`, which seeks from the SeekHead and reads no clusters.

use std::io::{Cursor, Read, SeekFrom};

use file_format::FileFormat;
use serde::{Deserialize, Serialize};

use crate::{ExtractError, Options, Source, Thumbnail};

/// A `moov` box larger than this is refused: an hour of 60 fps video has a sample table of a
/// few MB; hostile files declare gigabytes.
pub const MAX_MOOV_BYTES: u64 = 64 * 1024 * 1024;
/// Top-level boxes walked before giving up on finding `moov` (a file that loops on
/// zero-sized or tiny boxes ends here).
const MAX_TOP_LEVEL_BOXES: usize = 4096;
/// Nesting depth walked inside `moov` (moov/trak/mdia/minf/stbl/stsd is 6).
const MAX_BOX_DEPTH: usize = 8;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoInfo {
    /// `MP4`, `QuickTime`, `Matroska`, `WebM`.
    pub container: String,
    /// Seconds.
    pub duration: Option<f64>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// `H.264`, `HEVC`, `VP9`, `AV1`... (the codec id when unknown).
    pub video_codec: Option<String>,
    pub audio_codec: Option<String>,
    /// Frames per second, from the sample table (MP4) or the default frame duration (Matroska).
    pub frame_rate: Option<f64>,
    /// Creation time as ISO 8601 UTC, `2024-05-17T10:30:00Z`.
    pub created: Option<String>,
    /// The poster the container carries (MP4 `covr`), as a thumbnail.
    pub poster: Option<Thumbnail>,
}

/// Describes the video in `source`. `Ok(None)`: the container holds no picture track (the
/// caller treats it as audio).
pub fn describe<S: Source>(
    source: &mut S,
    len: u64,
    format: FileFormat,
    options: &Options,
) -> Result<Option<VideoInfo>, ExtractError> {
    source.seek(SeekFrom::Start(0))?;
    match format {
        FileFormat::MatroskaVideo | FileFormat::Matroska3dVideo | FileFormat::Webm => {
            matroska(source, format)
        }
        _ => {
            let mut magic = [0u8; 8];
            source.read_exact(&mut magic)?;
            source.seek(SeekFrom::Start(0))?;
            if &magic[4..8] == b"ftyp"
                || &magic[4..8] == b"moov"
                || &magic[4..8] == b"wide"
                || &magic[4..8] == b"free"
                || &magic[4..8] == b"mdat"
            {
                mp4(source, len, format, options)
            } else {
                Err(ExtractError::malformed(
                    format.name(),
                    "unsupported video container",
                ))
            }
        }
    }
}

fn matroska<S: Source>(
    source: &mut S,
    format: FileFormat,
) -> Result<Option<VideoInfo>, ExtractError> {
    let container = if format == FileFormat::Webm {
        "WebM"
    } else {
        "Matroska"
    };
    let file = matroska_demuxer::MatroskaFile::open(source)
        .map_err(|e| ExtractError::malformed(container, e))?;
    let info = file.info();
    let scale = info.timestamp_scale().get() as f64;
    let duration = info
        .duration()
        .map(|d| d * scale / 1e9)
        .filter(|d| d.is_finite() && *d >= 0.0);
    // Matroska dates count nanoseconds from 2001-01-01T00:00:00 UTC.
    let created = info
        .date_utc()
        .map(|ns| iso_utc(978_307_200 + ns.div_euclid(1_000_000_000)));
    let tracks = file.tracks();
    let video = tracks
        .iter()
        .find(|t| t.track_type() == matroska_demuxer::TrackType::Video);
    let Some(video) = video else { return Ok(None) };
    let audio = tracks
        .iter()
        .find(|t| t.track_type() == matroska_demuxer::TrackType::Audio);
    let picture = video.video();
    Ok(Some(VideoInfo {
        container: container.to_owned(),
        duration,
        width: picture.and_then(|v| u32::try_from(v.pixel_width().get()).ok()),
        height: picture.and_then(|v| u32::try_from(v.pixel_height().get()).ok()),
        video_codec: Some(matroska_codec(video.codec_id())),
        audio_codec: audio.map(|a| matroska_codec(a.codec_id())),
        frame_rate: video.default_duration().map(|ns| 1e9 / ns.get() as f64),
        created,
        poster: None,
    }))
}

fn matroska_codec(id: &str) -> String {
    match id {
        "V_MPEG4/ISO/AVC" => "H.264",
        "V_MPEGH/ISO/HEVC" => "HEVC",
        "V_VP8" => "VP8",
        "V_VP9" => "VP9",
        "V_AV1" => "AV1",
        "V_THEORA" => "Theora",
        "V_MPEG4/ISO/ASP" | "V_MPEG4/ISO/SP" => "MPEG-4 Visual",
        "A_OPUS" => "Opus",
        "A_VORBIS" => "Vorbis",
        "A_FLAC" => "FLAC",
        "A_MPEG/L3" => "MP3",
        "A_AC3" => "AC-3",
        "A_EAC3" => "E-AC-3",
        id if id.starts_with("A_AAC") => "AAC",
        id if id.starts_with("A_PCM") => "PCM",
        other => other,
    }
    .to_owned()
}

fn mp4<S: Source>(
    source: &mut S,
    len: u64,
    format: FileFormat,
    options: &Options,
) -> Result<Option<VideoInfo>, ExtractError> {
    let container = if format == FileFormat::AppleQuicktime {
        "QuickTime"
    } else {
        "MP4"
    };
    let (ftyp, moov) = top_level_boxes(source, len, container)?;
    let mut stream = ftyp.clone();
    stream.extend_from_slice(&moov);
    let context = mp4parse::read_mp4(&mut Cursor::new(&stream))
        .map_err(|e| ExtractError::malformed(container, e))?;
    let facts = MoovFacts::read(&moov[8..]);

    let mut info = VideoInfo {
        container: container.to_owned(),
        duration: None,
        width: None,
        height: None,
        video_codec: None,
        audio_codec: None,
        frame_rate: None,
        created: facts.created,
        poster: None,
    };
    if options.thumbnail {
        let cover = context
            .userdata
            .as_ref()
            .and_then(|u| u.as_ref().ok())
            .and_then(|u| u.meta.as_ref());
        let first = cover
            .and_then(|m| m.cover_art.as_ref())
            .and_then(|c| c.first());
        // A broken poster does not fail the video.
        info.poster = first.and_then(|bytes| crate::image::thumbnail_from_bytes(bytes).ok());
    }
    let mut has_video = false;
    for (index, track) in context.tracks.iter().enumerate() {
        let seconds = match (track.duration, track.timescale) {
            (Some(d), Some(ts)) if ts.0 > 0 => Some(d.0 as f64 / ts.0 as f64),
            _ => None,
        };
        if let Some(s) = seconds {
            info.duration = Some(info.duration.map_or(s, |d: f64| d.max(s)));
        }
        let fourcc = facts.sample_entries.get(index).copied();
        match track.track_type {
            mp4parse::TrackType::Video | mp4parse::TrackType::Picture if !has_video => {
                has_video = true;
                info.video_codec = fourcc.map(mp4_codec);
                let entry = track.stsd.as_ref().and_then(|s| s.descriptions.first());
                if let Some(mp4parse::SampleEntry::Video(v)) = entry {
                    info.width = Some(u32::from(v.width));
                    info.height = Some(u32::from(v.height));
                } else if let Some(tkhd) = &track.tkhd {
                    // Sample entries mp4parse does not parse (HEVC): the track header's size, 16.16 fixed point.
                    info.width = Some(tkhd.width >> 16);
                    info.height = Some(tkhd.height >> 16);
                }
                if let (Some(stts), Some(ts)) = (&track.stts, track.timescale) {
                    let (frames, ticks) = stts.samples.iter().fold((0u64, 0u64), |(f, t), s| {
                        (
                            f + u64::from(s.sample_count),
                            t + u64::from(s.sample_count) * u64::from(s.sample_delta),
                        )
                    });
                    if ticks > 0 {
                        info.frame_rate = Some(frames as f64 * ts.0 as f64 / ticks as f64);
                    }
                }
            }
            mp4parse::TrackType::Audio if info.audio_codec.is_none() => {
                info.audio_codec = fourcc.map(mp4_codec)
            }
            _ => {}
        }
    }
    Ok(has_video.then_some(info))
}

fn mp4_codec(fourcc: [u8; 4]) -> String {
    match &fourcc {
        b"avc1" | b"avc3" => "H.264",
        b"hvc1" | b"hev1" => "HEVC",
        b"av01" => "AV1",
        b"vp09" => "VP9",
        b"vp08" => "VP8",
        b"mp4v" => "MPEG-4 Visual",
        b"mp4a" => "AAC",
        b"Opus" => "Opus",
        b"fLaC" => "FLAC",
        b".mp3" => "MP3",
        b"ac-3" => "AC-3",
        b"ec-3" => "E-AC-3",
        b"alac" => "ALAC",
        b"apcn" | b"apch" | b"apcs" | b"apco" | b"ap4h" => "ProRes",
        other => return String::from_utf8_lossy(other).into_owned(),
    }
    .to_owned()
}

/// Walks the top-level boxes by seeking over their bodies and returns `ftyp` and `moov`
/// whole (headers included). The media data (`mdat`) is never read.
fn top_level_boxes<S: Source>(
    source: &mut S,
    len: u64,
    container: &str,
) -> Result<(Vec<u8>, Vec<u8>), ExtractError> {
    let mut at = 0u64;
    let mut ftyp = Vec::new();
    for _ in 0..MAX_TOP_LEVEL_BOXES {
        if at + 8 > len {
            break;
        }
        source.seek(SeekFrom::Start(at))?;
        let mut header = [0u8; 16];
        source.read_exact(&mut header[..8])?;
        let mut size = u64::from(u32::from_be_bytes([
            header[0], header[1], header[2], header[3],
        ]));
        let kind = [header[4], header[5], header[6], header[7]];
        let mut header_len = 8;
        if size == 1 {
            source.read_exact(&mut header[8..16])?;
            size = u64::from_be_bytes(header[8..16].try_into().expect("eight bytes"));
            header_len = 16;
        } else if size == 0 {
            size = len - at;
        }
        if size < header_len || at + size > len {
            return Err(ExtractError::malformed(
                container,
                format!("box {} overruns the file", String::from_utf8_lossy(&kind)),
            ));
        }
        match &kind {
            b"ftyp" | b"moov" => {
                if size > MAX_MOOV_BYTES {
                    return Err(ExtractError::TooLarge {
                        what: format!("a {size}-byte {} box", String::from_utf8_lossy(&kind)),
                        limit: format!("{MAX_MOOV_BYTES} bytes"),
                    });
                }
                source.seek(SeekFrom::Start(at))?;
                let mut body = Vec::with_capacity(size as usize);
                (&mut *source).take(size).read_to_end(&mut body)?;
                if kind == *b"moov" {
                    // mp4parse wants a plain 32-bit size; rewrite a 64-bit header.
                    if header_len == 16 {
                        let mut plain = ((size - 8) as u32).to_be_bytes().to_vec();
                        plain.extend_from_slice(b"moov");
                        plain.extend_from_slice(&body[16..]);
                        body = plain;
                    }
                    return Ok((ftyp, body));
                }
                ftyp = body;
            }
            _ => {}
        }
        at += size;
    }
    Err(ExtractError::malformed(container, "no moov box"))
}

/// What the walk over `moov` finds beside mp4parse.
#[derive(Default)]
struct MoovFacts {
    /// The first sample entry's type of each `trak`, in order.
    sample_entries: Vec<[u8; 4]>,
    created: Option<String>,
}

impl MoovFacts {
    fn read(moov_body: &[u8]) -> Self {
        let mut facts = Self::default();
        facts.walk(moov_body, 0);
        facts
    }

    fn walk(&mut self, mut bytes: &[u8], depth: usize) {
        if depth > MAX_BOX_DEPTH {
            return;
        }
        while bytes.len() >= 8 {
            let size = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
            let kind = [bytes[4], bytes[5], bytes[6], bytes[7]];
            if size < 8 || size > bytes.len() {
                return;
            }
            let body = &bytes[8..size];
            match &kind {
                b"trak" => {
                    let before = self.sample_entries.len();
                    self.walk(body, depth + 1);
                    if self.sample_entries.len() == before {
                        self.sample_entries.push(*b"????");
                    }
                }
                b"mdia" | b"minf" | b"stbl" => self.walk(body, depth + 1),
                // version/flags, entry count, then the first entry's size and type.
                b"stsd" if body.len() >= 16 => self
                    .sample_entries
                    .push([body[12], body[13], body[14], body[15]]),
                b"mvhd" if !body.is_empty() => {
                    let seconds = if body[0] == 1 {
                        body.get(4..12)
                            .map(|b| u64::from_be_bytes(b.try_into().expect("eight bytes")))
                    } else {
                        body.get(4..8).map(|b| {
                            u64::from(u32::from_be_bytes(b.try_into().expect("four bytes")))
                        })
                    };
                    // Seconds since 1904-01-01; zero means "not set".
                    self.created = seconds
                        .filter(|&s| s > 0)
                        .and_then(|s| i64::try_from(s).ok())
                        .map(|s| iso_utc(s - 2_082_844_800));
                }
                _ => {}
            }
            bytes = &bytes[size..];
        }
    }
}

/// Unix seconds as ISO 8601 UTC (proleptic Gregorian; civil-from-days after H. Hinnant).
pub fn iso_utc(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates() {
        assert_eq!(iso_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso_utc(1_715_941_800), "2024-05-17T10:30:00Z");
        assert_eq!(iso_utc(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn moov_walk_finds_entries_and_date() {
        fn boxed(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
            let mut b = ((body.len() + 8) as u32).to_be_bytes().to_vec();
            b.extend_from_slice(kind);
            b.extend_from_slice(body);
            b
        }
        let mut stsd_body = vec![0u8; 8];
        stsd_body.extend_from_slice(&boxed(b"hvc1", &[0u8; 8]));
        let trak = boxed(
            b"trak",
            &boxed(
                b"mdia",
                &boxed(b"minf", &boxed(b"stbl", &boxed(b"stsd", &stsd_body))),
            ),
        );
        let mut mvhd = vec![0u8; 4];
        mvhd.extend_from_slice(&((1_715_941_800u64 + 2_082_844_800) as u32).to_be_bytes());
        let mut moov = boxed(b"mvhd", &mvhd);
        moov.extend_from_slice(&trak);
        // A box claiming more than is there ends the walk without a panic.
        moov.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, b't', b'r', b'a', b'k']);
        let facts = MoovFacts::read(&moov);
        assert_eq!(facts.sample_entries, vec![*b"hvc1"]);
        assert_eq!(facts.created.as_deref(), Some("2024-05-17T10:30:00Z"));
    }

    #[test]
    fn looping_or_overrunning_boxes_are_errors() {
        let mut file = 16u32.to_be_bytes().to_vec();
        file.extend_from_slice(b"ftypisom\0\0\0\0");
        file.extend_from_slice(&100u32.to_be_bytes());
        file.extend_from_slice(b"moov");
        let len = file.len() as u64;
        let err = describe(
            &mut Cursor::new(file),
            len,
            FileFormat::Mpeg4Part14Video,
            &Options::default(),
        )
        .unwrap_err();
        assert!(matches!(err, ExtractError::Malformed { .. }), "{err:?}");
    }
}
