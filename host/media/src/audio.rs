//! Audio: symphonia's demuxers probe the container without decoding a sample — duration,
//! codec, sample rate, channels, tags and the embedded cover. Where the header holds no
//! duration (MP3 without a Xing/Info/VBRI frame, raw ADTS AAC) symphonia estimates it from
//! the bit rate; we say so, and [`exact_duration`] counts every packet for the true figure.

use std::io::{Read, Seek, SeekFrom};

use serde::{Deserialize, Serialize};
use symphonia::core::codecs::CodecParameters;
use symphonia::core::codecs::audio::{AudioCodecId, well_known as codec};
use symphonia::core::common::Limit;
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, FormatReader, TrackType};
use symphonia::core::io::{MediaSource, MediaSourceStream, MediaSourceStreamOptions};
use symphonia::core::meta::{MetadataOptions, MetadataRevision, StandardTag, StandardVisualKey};
use symphonia::core::units::Duration as Ticks;

use crate::{ExtractError, Options, Source, Thumbnail};

/// Tags longer than this are dropped by symphonia (a title is never 64 KiB; a hostile tag
/// can claim gigabytes).
pub const MAX_TAG_BYTES: usize = 64 * 1024;
/// An embedded cover larger than this is skipped: real covers are well under a few MB.
pub const MAX_COVER_BYTES: usize = 16 * 1024 * 1024;
/// How far past the ID3v2 tag the first MPEG frame is looked for.
const MP3_FIRST_FRAME_WINDOW: u64 = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudioInfo {
    /// symphonia's container name: `mp3`, `flac`, `ogg`, `wave`, `isomp4`, `aac` (ADTS)...
    pub container: String,
    pub codec: String,
    /// Seconds.
    pub duration: Option<f64>,
    /// True when `duration` comes from the bit rate, not the header: call [`exact_duration`].
    pub duration_estimated: bool,
    pub sample_rate: Option<u32>,
    pub channels: Option<u32>,
    /// Average bits per second over the file, cover art excluded.
    pub bit_rate: Option<u32>,
    pub tags: AudioTags,
    /// The embedded front cover (or the first picture), as a thumbnail.
    pub cover: Option<Thumbnail>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudioTags {
    pub title: Option<String>,
    pub artist: Option<String>,
    pub album: Option<String>,
    pub track: Option<u32>,
    pub year: Option<i32>,
    pub genre: Option<String>,
}

/// A [`Source`] with its length, as symphonia wants it.
struct Sized<S> {
    inner: S,
    len: u64,
}

impl<S: Read> Read for Sized<S> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf)
    }
}

impl<S: Seek> Seek for Sized<S> {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(pos)
    }
}

impl<S: Source> MediaSource for Sized<S> {
    fn is_seekable(&self) -> bool {
        true
    }
    fn byte_len(&self) -> Option<u64> {
        Some(self.len)
    }
}

fn open(source: Box<dyn Source>, len: u64) -> Result<Box<dyn FormatReader>, ExtractError> {
    let stream = MediaSourceStream::new(
        Box::new(Sized { inner: source, len }),
        MediaSourceStreamOptions::default(),
    );
    let metadata = MetadataOptions::default()
        .limit_tag_bytes(Limit::Maximum(MAX_TAG_BYTES))
        .limit_visual_bytes(Limit::Maximum(MAX_COVER_BYTES));
    symphonia::default::get_probe()
        .probe(&Hint::new(), stream, FormatOptions::default(), metadata)
        .map_err(|e| symphonia_error("audio", e))
}

fn symphonia_error(format: &str, e: SymphoniaError) -> ExtractError {
    match e {
        SymphoniaError::IoError(io) => {
            ExtractError::malformed(format, format!("truncated or unreadable: {io}"))
        }
        SymphoniaError::LimitError(what) => ExtractError::TooLarge {
            what: format!("{format} {what}"),
            limit: "symphonia's limits".to_owned(),
        },
        other => ExtractError::malformed(format, other),
    }
}

/// Probes the audio in `source` without decoding it.
pub fn probe(
    mut source: Box<dyn Source>,
    len: u64,
    options: &Options,
) -> Result<AudioInfo, ExtractError> {
    let mp3_has_header = mp3_has_duration_header(&mut source)?;
    source.seek(SeekFrom::Start(0))?;
    let mut reader = open(source, len)?;
    let container = reader.format_info().short_name.to_owned();
    let track = reader
        .default_track(TrackType::Audio)
        .ok_or_else(|| ExtractError::malformed(&container, "no audio track"))?
        .clone();
    let Some(CodecParameters::Audio(params)) = &track.codec_params else {
        return Err(ExtractError::malformed(
            &container,
            "no audio codec parameters",
        ));
    };
    let duration = match (track.time_base, track.duration) {
        (Some(tb), Some(d)) => tb.calc_duration(d).map(|t| t.as_secs_f64()),
        _ => None,
    };
    let duration_estimated = match container.as_str() {
        "mp3" | "mp2" | "mp1" => !mp3_has_header,
        "aac" => true,
        _ => false,
    };

    let mut tags = AudioTags::default();
    let mut cover = None;
    // Oldest first (an ID3v2 tag before the container's own), later revisions overriding.
    let mut metadata = reader.metadata();
    loop {
        if let Some(revision) = metadata.current() {
            read_tags(revision, &mut tags);
            if cover.is_none() {
                cover = pick_cover(revision);
            }
        }
        if metadata.pop().is_none() {
            break;
        }
    }
    let cover_len = cover.as_ref().map_or(0, |c: &Vec<u8>| c.len() as u64);
    let bit_rate = duration
        .filter(|&d| d > 0.0)
        .map(|d| ((len.saturating_sub(cover_len) as f64 * 8.0) / d).min(u32::MAX as f64) as u32);
    let cover = match cover {
        Some(bytes) if options.thumbnail => crate::image::thumbnail_from_bytes(&bytes).ok(),
        _ => None,
    };
    Ok(AudioInfo {
        container,
        codec: codec_name(params.codec).to_owned(),
        duration,
        duration_estimated,
        sample_rate: params.sample_rate,
        channels: params.channels.as_ref().map(|c| c.count() as u32),
        bit_rate,
        tags,
        cover,
    })
}

/// The exact duration in seconds, by reading every packet of the audio track (no decoding).
pub fn exact_duration(source: Box<dyn Source>, len: u64) -> Result<f64, ExtractError> {
    let mut reader = open(source, len)?;
    let container = reader.format_info().short_name.to_owned();
    let track = reader
        .default_track(TrackType::Audio)
        .ok_or_else(|| ExtractError::malformed(&container, "no audio track"))?
        .clone();
    let time_base = track
        .time_base
        .ok_or_else(|| ExtractError::malformed(&container, "no time base"))?;
    let mut ticks: u64 = 0;
    loop {
        match reader.next_packet() {
            Ok(Some(packet)) if packet.track_id == track.id => {
                ticks = ticks.saturating_add(packet.dur.get())
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            // A truncated tail ends the scan: what was read is the duration that plays.
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                break;
            }
            Err(e) => return Err(symphonia_error(&container, e)),
        }
    }
    time_base
        .calc_duration(Ticks::from(ticks))
        .map(|t| t.as_secs_f64())
        .ok_or_else(|| ExtractError::malformed(&container, "duration overflows"))
}

fn read_tags(revision: &MetadataRevision, tags: &mut AudioTags) {
    let all = revision.media.tags.iter().chain(
        revision
            .per_track
            .iter()
            .flat_map(|t| t.metadata.tags.iter()),
    );
    for tag in all {
        let Some(std) = &tag.std else { continue };
        match std {
            StandardTag::TrackTitle(s) => tags.title = Some(s.to_string()),
            StandardTag::Artist(s) => tags.artist = Some(s.to_string()),
            StandardTag::Album(s) => tags.album = Some(s.to_string()),
            StandardTag::Genre(s) => tags.genre = Some(s.to_string()),
            StandardTag::TrackNumber(n) => tags.track = u32::try_from(*n).ok(),
            StandardTag::RecordingYear(y) | StandardTag::ReleaseYear(y) => {
                tags.year = Some(i32::from(*y))
            }
            StandardTag::RecordingDate(s) | StandardTag::ReleaseDate(s) if tags.year.is_none() => {
                tags.year = s.get(..4).and_then(|y| y.parse().ok());
            }
            _ => {}
        }
    }
}

fn pick_cover(revision: &MetadataRevision) -> Option<Vec<u8>> {
    let visuals = &revision.media.visuals;
    visuals
        .iter()
        .find(|v| v.usage == Some(StandardVisualKey::FrontCover))
        .or_else(|| visuals.first())
        .map(|v| v.data.to_vec())
}

fn codec_name(id: AudioCodecId) -> &'static str {
    match id {
        codec::CODEC_ID_MP1 => "MP1",
        codec::CODEC_ID_MP2 => "MP2",
        codec::CODEC_ID_MP3 => "MP3",
        codec::CODEC_ID_AAC => "AAC",
        codec::CODEC_ID_FLAC => "FLAC",
        codec::CODEC_ID_VORBIS => "Vorbis",
        codec::CODEC_ID_OPUS => "Opus",
        codec::CODEC_ID_ALAC => "ALAC",
        codec::CODEC_ID_AC3 => "AC-3",
        codec::CODEC_ID_EAC3 => "E-AC-3",
        codec::CODEC_ID_SPEEX => "Speex",
        codec::CODEC_ID_WAVPACK => "WavPack",
        codec::CODEC_ID_PCM_ALAW => "PCM A-law",
        codec::CODEC_ID_PCM_MULAW => "PCM mu-law",
        id if (codec::CODEC_ID_PCM_S32LE..=codec::CODEC_ID_PCM_MULAW).contains(&id) => "PCM",
        id if (codec::CODEC_ID_ADPCM_G722..codec::CODEC_ID_VORBIS).contains(&id) => "ADPCM",
        _ => "unknown",
    }
}

/// Whether the first MPEG audio frame carries a Xing/Info or VBRI header, i.e. whether the
/// MP3's duration is written down rather than guessed from the bit rate.
fn mp3_has_duration_header<R: Read + Seek>(source: &mut R) -> Result<bool, ExtractError> {
    let mut id3 = [0u8; 10];
    let mut start = 0u64;
    if source.read(&mut id3)? == 10 && &id3[..3] == b"ID3" {
        let size = id3[6..10]
            .iter()
            .fold(0u64, |acc, &b| (acc << 7) | u64::from(b & 0x7f));
        let footer = if id3[5] & 0x10 != 0 { 10 } else { 0 };
        start = 10 + size + footer;
    }
    source.seek(SeekFrom::Start(start))?;
    let mut window = Vec::new();
    source
        .take(MP3_FIRST_FRAME_WINDOW)
        .read_to_end(&mut window)?;
    Ok(xing_or_vbri(&window))
}

/// Looks for the first MPEG audio frame header in `window` and checks the tag positions
/// the Xing and VBRI specifications give for it.
fn xing_or_vbri(window: &[u8]) -> bool {
    let Some(sync) = window
        .windows(2)
        .position(|w| w[0] == 0xff && w[1] & 0xe0 == 0xe0 && (w[1] >> 3) & 3 != 1)
    else {
        return false;
    };
    let frame = &window[sync..];
    if frame.len() < 4 {
        return false;
    }
    let mpeg1 = (frame[1] >> 3) & 3 == 3;
    let mono = (frame[3] >> 6) & 3 == 3;
    // Side information precedes the Xing tag; its size depends on version and channels.
    let side_info = match (mpeg1, mono) {
        (true, true) => 17,
        (true, false) => 32,
        (false, true) => 9,
        (false, false) => 17,
    };
    let at = |offset: usize, tag: &[u8]| frame.get(offset..offset + tag.len()) == Some(tag);
    at(4 + side_info, b"Xing") || at(4 + side_info, b"Info") || at(4 + 32, b"VBRI")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xing_found_where_the_spec_puts_it() {
        // MPEG-1 layer III, 128 kbit/s, 44.1 kHz, joint stereo.
        let mut frame = vec![0xff, 0xfb, 0x90, 0x44];
        frame.extend_from_slice(&[0u8; 32]);
        frame.extend_from_slice(b"Info");
        assert!(xing_or_vbri(&frame));
        let mut mono = vec![0u8; 3];
        mono.extend_from_slice(&[0xff, 0xfb, 0x90, 0xc4]);
        mono.extend_from_slice(&[0u8; 17]);
        mono.extend_from_slice(b"Xing");
        assert!(xing_or_vbri(&mono));
        // The tag at the wrong offset does not count.
        let mut wrong = vec![0xff, 0xfb, 0x90, 0x44];
        wrong.extend_from_slice(&[0u8; 17]);
        wrong.extend_from_slice(b"Xing");
        assert!(!xing_or_vbri(&wrong));
        assert!(!xing_or_vbri(b"no frame here"));
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let bytes = b"ID3\x04\0\0\0\0\0\x10not really an mp3 at all".to_vec();
        let len = bytes.len() as u64;
        let err = probe(
            Box::new(std::io::Cursor::new(bytes)),
            len,
            &Options::default(),
        )
        .unwrap_err();
        assert!(matches!(err, ExtractError::Malformed { .. }), "{err:?}");
    }
}
