//! Images: size, format and colour type from the header (`image` with [`Limits`], or
//! `jpeg-decoder` for JPEG), EXIF (`kamadak-exif`: date taken, camera, orientation, GPS), and
//! a thumbnail whose longest side is [`THUMBNAIL_SIZE`] px with the orientation applied.
//!
//! JPEG thumbnails shrink on load, as libvips does: `jpeg-decoder` runs a reduced IDCT that
//! yields the picture at 1/2, 1/4 or 1/8 scale straight from the DCT coefficients, so a
//! 12-megapixel photo is decoded as 0.19 megapixels; at 1/8 our own [`jpeg_dc`] does it
//! faster still, from the DC coefficients alone. `fast_image_resize` (SIMD convolution)
//! then takes it to the final size. Other formats are decoded whole under [`Limits`].

use std::io::{BufRead, Cursor, Read, Seek, SeekFrom};

use ::image::codecs::jpeg::JpegEncoder;
use ::image::codecs::webp::WebPEncoder;
use ::image::metadata::Orientation;
use ::image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits, RgbImage, RgbaImage};
use fast_image_resize::images::Image as ResizeImage;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use file_format::FileFormat;
use serde::{Deserialize, Serialize};

use crate::{ExtractError, Options, Source, Thumbnail, ThumbnailFormat, jpeg_dc};

/// Longest side of a thumbnail, in pixels.
pub const THUMBNAIL_SIZE: u32 = 256;
/// Widest or tallest picture we decode: larger ones are refused before any pixel is
/// allocated (a PNG header can declare 4 billion pixels in 33 bytes).
pub const MAX_DIMENSION: u32 = 32_768;
/// Pixels we decode at most (a 100-megapixel photo is the largest real cameras make).
pub const MAX_PIXELS: u64 = 120_000_000;
/// Bytes a decoder may allocate: the RGBA buffer of [`MAX_PIXELS`] plus working space.
pub const MAX_DECODE_BYTES: u64 = 640 * 1024 * 1024;
/// EXIF in a TIFF is anywhere in the file, which kamadak-exif reads whole: not past this.
pub const MAX_EXIF_SCAN_BYTES: u64 = 64 * 1024 * 1024;
/// A JPEG up to this size is read into memory for its thumbnail (camera JPEGs are 2–20 MB).
const MAX_JPEG_IN_MEMORY: u64 = 64 * 1024 * 1024;
/// JPEG quality of thumbnails: small files, no visible blocks at 256 px.
const THUMBNAIL_QUALITY: u8 = 82;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// As stored (before orientation).
    pub width: u32,
    pub height: u32,
    /// `JPEG`, `PNG`, `GIF`, `WebP`, `TIFF`.
    pub format: String,
    /// `L8`, `La8`, `Rgb8`, `Rgba8`, `L16`, `Rgb16`, `Cmyk8`...
    pub color_type: String,
    pub exif: Exif,
    pub thumbnail: Option<Thumbnail>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Exif {
    /// `DateTimeOriginal` as ISO 8601 local time, `2024-05-17T10:30:00`.
    pub taken: Option<String>,
    /// `Make` and `Model`, e.g. `Canon Canon EOS 5D`.
    pub camera: Option<String>,
    /// EXIF orientation, 1 to 8.
    pub orientation: Option<u16>,
    /// Latitude and longitude in degrees (north and east positive).
    pub gps: Option<(f64, f64)>,
}

/// The formats this crate decodes (the `image` features enabled in Cargo.toml).
pub fn supported(format: FileFormat) -> bool {
    image_format(format).is_some()
}

fn image_format(format: FileFormat) -> Option<ImageFormat> {
    match format {
        FileFormat::JointPhotographicExpertsGroup => Some(ImageFormat::Jpeg),
        FileFormat::PortableNetworkGraphics => Some(ImageFormat::Png),
        FileFormat::GraphicsInterchangeFormat => Some(ImageFormat::Gif),
        FileFormat::Webp => Some(ImageFormat::WebP),
        FileFormat::TagImageFileFormat => Some(ImageFormat::Tiff),
        _ => None,
    }
}

fn limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_DIMENSION);
    limits.max_image_height = Some(MAX_DIMENSION);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    limits
}

fn check_size(width: u32, height: u32) -> Result<(), ExtractError> {
    if width == 0 || height == 0 {
        return Err(ExtractError::malformed("image", "zero width or height"));
    }
    if width > MAX_DIMENSION
        || height > MAX_DIMENSION
        || u64::from(width) * u64::from(height) > MAX_PIXELS
    {
        return Err(ExtractError::TooLarge {
            what: format!("a {width}x{height} picture"),
            limit: format!("{MAX_DIMENSION} px a side, {MAX_PIXELS} pixels"),
        });
    }
    Ok(())
}

fn image_error(format: &str, e: ::image::ImageError) -> ExtractError {
    match e {
        ::image::ImageError::Limits(l) => ExtractError::TooLarge {
            what: format!("{format} decoding"),
            limit: l.to_string(),
        },
        other => ExtractError::malformed(format, other),
    }
}

fn jpeg_error(e: jpeg_decoder::Error) -> ExtractError {
    ExtractError::malformed("JPEG", e)
}

/// Describes the picture in `source`.
pub fn describe<S: Source>(
    source: &mut S,
    format: FileFormat,
    options: &Options,
) -> Result<ImageInfo, ExtractError> {
    let image_format = image_format(format)
        .ok_or_else(|| ExtractError::malformed(format.name(), "unsupported picture format"))?;
    let len = source.seek(SeekFrom::End(0))?;
    source.seek(SeekFrom::Start(0))?;
    let exif = if image_format != ImageFormat::Tiff || len <= MAX_EXIF_SCAN_BYTES {
        read_exif(source)
    } else {
        Exif::default()
    };
    source.seek(SeekFrom::Start(0))?;
    let orientation = exif
        .orientation
        .and_then(|o| u8::try_from(o).ok())
        .and_then(Orientation::from_exif);
    let (width, height, color_type, thumbnail) = if image_format == ImageFormat::Jpeg {
        if options.thumbnail && len <= MAX_JPEG_IN_MEMORY {
            // Entropy decoding reads byte by byte: from a slice that is a load, through a
            // reader a call per byte.
            let mut bytes = Vec::with_capacity(len as usize);
            source.read_to_end(&mut bytes)?;
            describe_jpeg(bytes.as_slice(), Some(&bytes), options, orientation)?
        } else {
            describe_jpeg(&mut *source, None, options, orientation)?
        }
    } else {
        let mut reader = ImageReader::with_format(&mut *source, image_format);
        reader.limits(limits());
        let decoder = reader
            .into_decoder()
            .map_err(|e| image_error(image_format.to_mime_type(), e))?;
        let (width, height) = decoder.dimensions();
        check_size(width, height)?;
        let color_type = format!("{:?}", decoder.color_type());
        let thumbnail = if options.thumbnail {
            let picture = DynamicImage::from_decoder(decoder)
                .map_err(|e| image_error(image_format.to_mime_type(), e))?;
            Some(thumbnail_of(picture, orientation)?)
        } else {
            None
        };
        (width, height, color_type, thumbnail)
    };
    Ok(ImageInfo {
        width,
        height,
        format: format_name(image_format).to_owned(),
        color_type,
        exif,
        thumbnail,
    })
}

/// `whole` is the file when it is in memory: then a large picture's thumbnail comes from
/// [`jpeg_dc`] when that handles the file.
fn describe_jpeg<R: Read>(
    reader: R,
    whole: Option<&[u8]>,
    options: &Options,
    orientation: Option<Orientation>,
) -> Result<(u32, u32, String, Option<Thumbnail>), ExtractError> {
    let mut decoder = jpeg_decoder::Decoder::new(reader);
    decoder.read_info().map_err(jpeg_error)?;
    let info = decoder
        .info()
        .ok_or_else(|| ExtractError::malformed("JPEG", "no frame header"))?;
    let (width, height) = (u32::from(info.width), u32::from(info.height));
    check_size(width, height)?;
    let color_type = match info.pixel_format {
        jpeg_decoder::PixelFormat::L8 => "L8",
        jpeg_decoder::PixelFormat::L16 => "L16",
        jpeg_decoder::PixelFormat::RGB24 => "Rgb8",
        jpeg_decoder::PixelFormat::CMYK32 => "Cmyk8",
    };
    let thumbnail = if options.thumbnail {
        // jpeg-decoder would pick 1/8 too (the smallest scale still at least the thumbnail).
        let eighth = width.max(height).div_ceil(8) >= THUMBNAIL_SIZE;
        match whole.filter(|_| eighth).and_then(jpeg_dc::decode) {
            Some(small) => Some(rgb_thumbnail(
                small.rgb,
                small.width,
                small.height,
                orientation,
            )?),
            None => Some(jpeg_thumbnail(decoder, orientation)?),
        }
    } else {
        None
    };
    Ok((width, height, color_type.to_owned(), thumbnail))
}

fn format_name(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Jpeg => "JPEG",
        ImageFormat::Png => "PNG",
        ImageFormat::Gif => "GIF",
        ImageFormat::WebP => "WebP",
        ImageFormat::Tiff => "TIFF",
        _ => "other",
    }
}

/// A thumbnail of a picture held in memory (an audio file's cover), any supported format.
pub fn thumbnail_from_bytes(bytes: &[u8]) -> Result<Thumbnail, ExtractError> {
    let format = FileFormat::from_bytes(bytes);
    let mut cursor = Cursor::new(bytes);
    let options = Options {
        thumbnail: true,
        exact_duration: false,
    };
    describe(&mut cursor, format, &options)?
        .thumbnail
        .ok_or_else(|| ExtractError::malformed("cover", "no thumbnail"))
}

/// The size that fits `width`x`height` into the thumbnail square, aspect kept.
pub fn fit(width: u32, height: u32) -> (u32, u32) {
    let longest = width.max(height);
    if longest <= THUMBNAIL_SIZE {
        return (width.max(1), height.max(1));
    }
    let scale = |side: u32| {
        ((u64::from(side) * u64::from(THUMBNAIL_SIZE) + u64::from(longest) / 2)
            / u64::from(longest))
        .max(1) as u32
    };
    (scale(width), scale(height))
}

fn jpeg_thumbnail<R: std::io::Read>(
    mut decoder: jpeg_decoder::Decoder<R>,
    orientation: Option<Orientation>,
) -> Result<Thumbnail, ExtractError> {
    decoder.set_max_decoding_buffer_size(MAX_DECODE_BYTES as usize);
    // The smallest DCT scale (1/8..1) whose output is still at least the thumbnail size.
    let (width, height) = decoder
        .scale(THUMBNAIL_SIZE as u16, THUMBNAIL_SIZE as u16)
        .map_err(jpeg_error)?;
    let pixels = decoder.decode().map_err(jpeg_error)?;
    let info = decoder
        .info()
        .ok_or_else(|| ExtractError::malformed("JPEG", "no frame header"))?;
    let (width, height) = (u32::from(width), u32::from(height));
    let rgb = match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => pixels,
        jpeg_decoder::PixelFormat::L8 => pixels.iter().flat_map(|&l| [l, l, l]).collect(),
        jpeg_decoder::PixelFormat::L16 => pixels
            .chunks_exact(2)
            .flat_map(|l| [l[0], l[0], l[0]])
            .collect(),
        jpeg_decoder::PixelFormat::CMYK32 => pixels
            .chunks_exact(4)
            .flat_map(|p| {
                // Adobe CMYK JPEGs store inverted ink; jpeg-decoder hands it back as stored.
                let k = u16::from(p[3]);
                [p[0], p[1], p[2]].map(|c| (u16::from(c) * k / 255) as u8)
            })
            .collect(),
    };
    rgb_thumbnail(rgb, width, height, orientation)
}

/// The thumbnail of a JPEG decoded (at reduced scale) to packed RGB.
fn rgb_thumbnail(
    rgb: Vec<u8>,
    width: u32,
    height: u32,
    orientation: Option<Orientation>,
) -> Result<Thumbnail, ExtractError> {
    let expected = width as usize * height as usize * 3;
    if rgb.len() != expected {
        return Err(ExtractError::malformed(
            "JPEG",
            "decoded size does not match the header",
        ));
    }
    let resized = resize(rgb, width, height, PixelType::U8x3)?;
    let (w, h) = fit(width, height);
    let picture = RgbImage::from_raw(w, h, resized)
        .ok_or_else(|| ExtractError::malformed("JPEG", "resize size"))?;
    encode(DynamicImage::ImageRgb8(picture), orientation)
}

fn thumbnail_of(
    picture: DynamicImage,
    orientation: Option<Orientation>,
) -> Result<Thumbnail, ExtractError> {
    let (width, height) = (picture.width(), picture.height());
    let (w, h) = fit(width, height);
    let small = if picture.color().has_alpha() {
        let rgba = picture.into_rgba8().into_raw();
        let resized = resize(rgba, width, height, PixelType::U8x4)?;
        DynamicImage::ImageRgba8(
            RgbaImage::from_raw(w, h, resized)
                .ok_or_else(|| ExtractError::malformed("image", "resize size"))?,
        )
    } else {
        let rgb = picture.into_rgb8().into_raw();
        let resized = resize(rgb, width, height, PixelType::U8x3)?;
        DynamicImage::ImageRgb8(
            RgbImage::from_raw(w, h, resized)
                .ok_or_else(|| ExtractError::malformed("image", "resize size"))?,
        )
    };
    encode(small, orientation)
}

/// Resizes packed 8-bit pixels to the thumbnail size with a Lanczos-3 filter (SIMD).
fn resize(
    pixels: Vec<u8>,
    width: u32,
    height: u32,
    pixel_type: PixelType,
) -> Result<Vec<u8>, ExtractError> {
    let (w, h) = fit(width, height);
    if (w, h) == (width, height) {
        return Ok(pixels);
    }
    let src = ResizeImage::from_vec_u8(width, height, pixels, pixel_type)
        .map_err(|e| ExtractError::malformed("image", e))?;
    let mut dst = ResizeImage::new(w, h, pixel_type);
    Resizer::new()
        .resize(
            &src,
            &mut dst,
            &ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3)),
        )
        .map_err(|e| ExtractError::malformed("image", e))?;
    Ok(dst.into_vec())
}

fn encode(
    mut picture: DynamicImage,
    orientation: Option<Orientation>,
) -> Result<Thumbnail, ExtractError> {
    if let Some(o) = orientation {
        picture.apply_orientation(o);
    }
    let mut bytes = Vec::new();
    let format = if picture.color().has_alpha() {
        picture
            .write_with_encoder(WebPEncoder::new_lossless(&mut bytes))
            .map_err(|e| image_error("WebP", e))?;
        ThumbnailFormat::WebP
    } else {
        picture
            .write_with_encoder(JpegEncoder::new_with_quality(&mut bytes, THUMBNAIL_QUALITY))
            .map_err(|e| image_error("JPEG", e))?;
        ThumbnailFormat::Jpeg
    };
    Ok(Thumbnail {
        width: picture.width(),
        height: picture.height(),
        format,
        bytes,
    })
}

/// Reads the EXIF facts we keep. A picture without EXIF, or with broken EXIF, has none:
/// that never fails the picture.
fn read_exif<R: BufRead + Seek>(source: &mut R) -> Exif {
    let Ok(exif) = ::exif::Reader::new().read_from_container(source) else {
        return Exif::default();
    };
    let field = |tag| exif.get_field(tag, ::exif::In::PRIMARY);
    let ascii = |tag| match field(tag).map(|f| &f.value) {
        Some(::exif::Value::Ascii(parts)) => parts
            .first()
            .map(|s| {
                String::from_utf8_lossy(s)
                    .trim_matches(|c: char| c == '\0' || c.is_whitespace())
                    .to_owned()
            })
            .filter(|s| !s.is_empty()),
        _ => None,
    };
    let taken = match field(::exif::Tag::DateTimeOriginal)
        .or_else(|| field(::exif::Tag::DateTime))
        .map(|f| &f.value)
    {
        Some(::exif::Value::Ascii(parts)) => parts
            .first()
            .and_then(|s| ::exif::DateTime::from_ascii(s).ok())
            .map(|d| {
                format!(
                    "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                    d.year, d.month, d.day, d.hour, d.minute, d.second
                )
            }),
        _ => None,
    };
    let camera = match (ascii(::exif::Tag::Make), ascii(::exif::Tag::Model)) {
        (Some(make), Some(model)) if model.starts_with(&make) => Some(model),
        (Some(make), Some(model)) => Some(format!("{make} {model}")),
        (make, model) => make.or(model),
    };
    let orientation = field(::exif::Tag::Orientation)
        .and_then(|f| f.value.get_uint(0))
        .and_then(|o| u16::try_from(o).ok())
        .filter(|o| (1..=8).contains(o));
    let degrees = |tag, reference, negative: &[u8]| {
        let ::exif::Value::Rational(parts) = &field(tag)?.value else {
            return None;
        };
        let [d, m, s] = parts.get(..3)? else {
            return None;
        };
        let value = d.to_f64() + m.to_f64() / 60.0 + s.to_f64() / 3600.0;
        let sign = match field(reference).map(|f| &f.value) {
            Some(::exif::Value::Ascii(r)) if r.first().map(|r| r.as_slice()) == Some(negative) => {
                -1.0
            }
            _ => 1.0,
        };
        value.is_finite().then_some(sign * value)
    };
    let gps = degrees(::exif::Tag::GPSLatitude, ::exif::Tag::GPSLatitudeRef, b"S").zip(degrees(
        ::exif::Tag::GPSLongitude,
        ::exif::Tag::GPSLongitudeRef,
        b"W",
    ));
    Exif {
        taken,
        camera,
        orientation,
        gps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_keeps_the_aspect() {
        assert_eq!(fit(4000, 3000), (256, 192));
        assert_eq!(fit(3000, 4000), (192, 256));
        assert_eq!(fit(100, 50), (100, 50));
        assert_eq!(fit(10_000, 1), (256, 1));
    }

    #[test]
    fn png_thumbnail_made_by_the_image_crate() {
        let picture = RgbImage::from_fn(640, 480, |x, y| {
            ::image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
        });
        let mut png = Vec::new();
        DynamicImage::ImageRgb8(picture)
            .write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
            .unwrap();
        let info = describe(
            &mut Cursor::new(&png),
            FileFormat::PortableNetworkGraphics,
            &Options::default(),
        )
        .unwrap();
        assert_eq!((info.width, info.height), (640, 480));
        assert_eq!(info.format, "PNG");
        assert_eq!(info.color_type, "Rgb8");
        let thumb = info.thumbnail.unwrap();
        assert_eq!(
            (thumb.width, thumb.height, thumb.format),
            (256, 192, ThumbnailFormat::Jpeg)
        );
        let decoded = ::image::load_from_memory(&thumb.bytes).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (256, 192));
    }

    #[test]
    fn a_large_jpeg_thumbnail_comes_from_the_dc_decoder_and_matches_jpeg_decoder() {
        // Left half dark, right half bright: the thumbnail must keep which side is which.
        let picture = RgbImage::from_fn(2400, 1600, |x, _| {
            let v = if x < 1200 { 30 } else { 220 };
            ::image::Rgb([v, v, v])
        });
        let mut jpeg = Vec::new();
        DynamicImage::ImageRgb8(picture)
            .write_to(&mut Cursor::new(&mut jpeg), ImageFormat::Jpeg)
            .unwrap();
        assert!(
            jpeg_dc::decode(&jpeg).is_some(),
            "a baseline JPEG takes the fast path"
        );
        let info = describe(
            &mut Cursor::new(&jpeg),
            FileFormat::JointPhotographicExpertsGroup,
            &Options::default(),
        )
        .unwrap();
        let thumb = info.thumbnail.unwrap();
        assert_eq!((thumb.width, thumb.height), (256, 171));
        let ours = ::image::load_from_memory(&thumb.bytes)
            .unwrap()
            .into_luma8();
        // The same file through jpeg-decoder's 1/8 path (what a file read as a stream gets).
        let reference = jpeg_thumbnail(jpeg_decoder::Decoder::new(jpeg.as_slice()), None).unwrap();
        let reference = ::image::load_from_memory(&reference.bytes)
            .unwrap()
            .into_luma8();
        for (x, y) in [(20, 80), (235, 80)] {
            let (a, b) = (ours.get_pixel(x, y)[0], reference.get_pixel(x, y)[0]);
            assert!(a.abs_diff(b) <= 4, "({x},{y}): {a} vs {b}");
        }
        assert!(ours.get_pixel(20, 80)[0] < 60 && ours.get_pixel(235, 80)[0] > 190);
    }

    #[test]
    fn huge_declared_png_is_refused_before_decoding() {
        // A valid PNG signature and IHDR declaring 100000x100000 pixels, nothing after it.
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = b"IHDR".to_vec();
        ihdr.extend_from_slice(&100_000u32.to_be_bytes());
        ihdr.extend_from_slice(&100_000u32.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        png.extend_from_slice(&13u32.to_be_bytes());
        png.extend_from_slice(&ihdr);
        png.extend_from_slice(&crc32(&ihdr).to_be_bytes());
        let err = describe(
            &mut Cursor::new(&png),
            FileFormat::PortableNetworkGraphics,
            &Options::default(),
        )
        .unwrap_err();
        assert!(matches!(err, ExtractError::TooLarge { .. }), "{err:?}");
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
}
