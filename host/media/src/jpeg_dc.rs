//! A JPEG decoded at 1/8 scale from its DC coefficients alone: the fast path of thumbnails.
//!
//! At 1/8 scale each 8x8 block becomes one pixel, the block's mean, which is its DC
//! coefficient (`mean = DC * Q[0] / 8 + 128`). So the AC coefficients need not be kept,
//! dequantised or transformed — only stepped over — and entropy decoding is nearly all
//! the work. `jpeg-decoder` (used for everything else) stores every coefficient, runs a
//! reduced IDCT per block and hands rows to a worker thread; this loop does none of that
//! and reads the entropy-coded data through a 64-bit bit buffer with lookahead tables, as
//! libjpeg-turbo does, stepping over several AC coefficients (and reading a whole DC
//! difference) in one table lookup, four lookups per refill of the buffer.
//!
//! It handles what cameras and phones write: baseline (SOF0/SOF1) 8-bit Huffman JPEGs, one
//! component (grey) or three (YCbCr) in one interleaved scan, any sampling factors,
//! restart intervals. Anything else — progressive, arithmetic, 12-bit, CMYK, Adobe RGB,
//! several scans, a restart marker out of place, a code no table holds — yields `None`
//! and the caller decodes with `jpeg-decoder`, which also reports what is wrong with a
//! damaged file. Every size comes from a header and is bounded before it is used.

/// Blocks (pixels of the 1/8 picture) decoded at most: a 120-megapixel photo has 1.9 M
/// luma blocks; planes of `i16` for all components stay under ~24 MiB.
const MAX_BLOCKS: usize = 4_000_000;

/// The picture at 1/8 scale: `ceil(width / 8)` x `ceil(height / 8)`, packed RGB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DcPicture {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

/// Decodes `data` at 1/8 scale, or `None` when it is not a JPEG this path handles.
pub fn decode(data: &[u8]) -> Option<DcPicture> {
    let mut parser = Parser::default();
    let scan_start = parser.headers(data)?;
    let frame = parser.frame.clone()?;
    let planes = decode_scan(&parser, &frame, &data[scan_start..])?;
    Some(to_rgb(&frame, &planes))
}

#[derive(Debug, Clone)]
struct Component {
    id: u8,
    h: usize,
    v: usize,
    quant: usize,
}

#[derive(Debug, Clone)]
struct Frame {
    width: usize,
    height: usize,
    components: Vec<Component>,
    h_max: usize,
    v_max: usize,
}

impl Frame {
    fn mcus_x(&self) -> usize {
        self.width.div_ceil(8 * self.h_max)
    }
    fn mcus_y(&self) -> usize {
        self.height.div_ceil(8 * self.v_max)
    }
}

/// What the scan header chose for each frame component: its Huffman tables.
#[derive(Debug, Clone, Copy)]
struct ScanComponent {
    dc_table: usize,
    ac_table: usize,
}

#[derive(Default)]
struct Parser {
    frame: Option<Frame>,
    /// Only element 0 of each quantisation table matters here.
    quant_dc: [Option<u16>; 4],
    dc_tables: [Option<DcTable>; 4],
    ac_tables: [Option<AcTable>; 4],
    restart_interval: usize,
    scan: Vec<ScanComponent>,
    /// An APP14 "Adobe" segment's transform: 0 means RGB or CMYK stored untransformed.
    adobe_transform: Option<u8>,
}

impl Parser {
    /// Reads the markers up to the first scan; returns where its entropy-coded data starts.
    fn headers(&mut self, data: &[u8]) -> Option<usize> {
        if data.get(..2)? != [0xFF, 0xD8] {
            return None;
        }
        let mut pos = 2;
        loop {
            // Markers may be preceded by any number of 0xFF fill bytes.
            while *data.get(pos)? == 0xFF && *data.get(pos + 1)? == 0xFF {
                pos += 1;
            }
            if *data.get(pos)? != 0xFF {
                return None;
            }
            let marker = *data.get(pos + 1)?;
            let len = usize::from(u16::from_be_bytes([
                *data.get(pos + 2)?,
                *data.get(pos + 3)?,
            ]));
            if len < 2 {
                return None;
            }
            let body = data.get(pos + 4..pos + 2 + len)?;
            match marker {
                0xC0 | 0xC1 => self.frame = Some(parse_frame(body)?),
                // Progressive, lossless, hierarchical, arithmetic: jpeg-decoder's job.
                0xC2 | 0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => return None,
                0xC4 => self.huffman_tables(body)?,
                0xDB => self.quant_tables(body)?,
                0xDD => {
                    self.restart_interval =
                        usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]))
                }
                0xEE if body.starts_with(b"Adobe") => self.adobe_transform = body.get(11).copied(),
                0xDA => {
                    self.scan_header(body)?;
                    return Some(pos + 2 + len);
                }
                0xD9 => return None,
                _ => {}
            }
            pos += 2 + len;
        }
    }

    fn quant_tables(&mut self, mut body: &[u8]) -> Option<()> {
        while let Some(&pq_tq) = body.first() {
            let (precision, id) = (pq_tq >> 4, usize::from(pq_tq & 15));
            let size = if precision == 0 { 64 } else { 128 };
            let table = body.get(1..1 + size)?;
            let first = if precision == 0 {
                u16::from(table[0])
            } else {
                u16::from_be_bytes([table[0], table[1]])
            };
            *self.quant_dc.get_mut(id)? = Some(first);
            body = &body[1 + size..];
        }
        Some(())
    }

    fn huffman_tables(&mut self, mut body: &[u8]) -> Option<()> {
        while let Some(&tc_th) = body.first() {
            let (class, id) = (tc_th >> 4, usize::from(tc_th & 15));
            let counts: [u8; 16] = body.get(1..17)?.try_into().ok()?;
            let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
            let symbols = body.get(17..17 + total)?;
            let code = Huffman::new(&counts, symbols)?;
            match class {
                0 => *self.dc_tables.get_mut(id)? = Some(DcTable::new(code)),
                1 => *self.ac_tables.get_mut(id)? = Some(AcTable::new(code)),
                _ => return None,
            }
            body = &body[17 + total..];
        }
        Some(())
    }

    fn scan_header(&mut self, body: &[u8]) -> Option<()> {
        let frame = self.frame.as_ref()?;
        let count = usize::from(*body.first()?);
        // One scan holding every component; several scans are jpeg-decoder's job.
        if count != frame.components.len() || body.len() < 1 + 2 * count + 3 {
            return None;
        }
        self.scan.clear();
        for (i, component) in frame.components.iter().enumerate() {
            let (id, tables) = (body[1 + 2 * i], body[2 + 2 * i]);
            if id != component.id {
                return None;
            }
            self.scan.push(ScanComponent {
                dc_table: usize::from(tables >> 4),
                ac_table: usize::from(tables & 15),
            });
        }
        let spectral = &body[1 + 2 * count..];
        // Baseline: the whole spectrum in one scan, no successive approximation.
        (spectral == [0, 63, 0]).then_some(())
    }
}

fn parse_frame(body: &[u8]) -> Option<Frame> {
    let precision = *body.first()?;
    let height = usize::from(u16::from_be_bytes([*body.get(1)?, *body.get(2)?]));
    let width = usize::from(u16::from_be_bytes([*body.get(3)?, *body.get(4)?]));
    let count = usize::from(*body.get(5)?);
    // A height of 0 means "given by a DNL marker later": rare, left to jpeg-decoder.
    if precision != 8 || width == 0 || height == 0 || !(count == 1 || count == 3) {
        return None;
    }
    let mut components = Vec::with_capacity(count);
    for i in 0..count {
        let c = body.get(6 + 3 * i..9 + 3 * i)?;
        let (h, v) = (usize::from(c[1] >> 4), usize::from(c[1] & 15));
        if !(1..=4).contains(&h) || !(1..=4).contains(&v) || c[2] > 3 {
            return None;
        }
        components.push(Component {
            id: c[0],
            h,
            v,
            quant: usize::from(c[2]),
        });
    }
    let h_max = components.iter().map(|c| c.h).max()?;
    let v_max = components.iter().map(|c| c.v).max()?;
    let frame = Frame {
        width,
        height,
        components,
        h_max,
        v_max,
    };
    let blocks: usize = frame
        .components
        .iter()
        .map(|c| frame.mcus_x() * c.h * frame.mcus_y() * c.v)
        .sum();
    (blocks <= MAX_BLOCKS).then_some(frame)
}

/// A canonical Huffman table: a 10-bit lookahead for the common short codes, and the
/// per-length limits of JPEG's Annex F for the rest.
#[derive(Clone)]
struct Huffman {
    /// Indexed by the next [`LOOKAHEAD`] bits: `length << 8 | symbol`, 0 when the code is
    /// longer.
    lookahead: Box<[u16; 1 << LOOKAHEAD]>,
    /// For each length 1..=16: the largest code of that length (exclusive bound), and
    /// the offset from a code to its symbol's index.
    max_code: [i32; 17],
    offset: [i32; 17],
    symbols: Vec<u8>,
}

/// 10 bits: 2 KiB a table, and with optimised tables (which most encoders write) the
/// codes of nearly all coefficients of a photo.
const LOOKAHEAD: u32 = 10;
/// 12 bits: 8 KiB a table, two coefficients a lookup on average in a high-quality photo.
const SKIP_BITS: u32 = 12;

/// A `skips` entry: how many bits to drop, how far the coefficient index moves, and
/// whether the last coefficient was the end of the block; 0 when not even one fits.
///
/// The bit count sits in the low bits with bits 4 and 5 clear, so the entry itself is a
/// valid shift amount (`u64::wrapping_shl` uses the low six bits): dropping the bits takes
/// no masking on the chain of dependent steps that bounds the loop. Sixteen bits an entry
/// keep the table in the first-level cache.
#[derive(Clone, Copy)]
struct Skip(u16);

impl Skip {
    const NONE: Skip = Skip(0);
    const BITS: u16 = 0x0F;
    const END_OF_BLOCK: u16 = 1 << 6;

    fn new(bits: u32, advance: u32, end_of_block: bool) -> Skip {
        debug_assert!(bits <= u32::from(Self::BITS) && advance < 256);
        Skip(
            bits as u16 | (advance as u16) << 8 | if end_of_block { Self::END_OF_BLOCK } else { 0 },
        )
    }
    fn bits(self) -> u32 {
        u32::from(self.0 & Self::BITS)
    }
    fn advance(self) -> u32 {
        u32::from(self.0 >> 8)
    }
    fn ends_block(self) -> bool {
        self.0 & Self::END_OF_BLOCK != 0
    }
}

impl Huffman {
    fn new(counts: &[u8; 16], symbols: &[u8]) -> Option<Huffman> {
        let mut lookahead = Box::new([0u16; 1 << LOOKAHEAD]);
        let mut max_code = [-1i32; 17];
        let mut offset = [0i32; 17];
        let mut code: i32 = 0;
        let mut index: i32 = 0;
        for length in 1..=16usize {
            let count = i32::from(counts[length - 1]);
            offset[length] = index - code;
            for _ in 0..count {
                // A code that does not fit its length: the table is not a prefix code (found by
                // the fuzzer: it would index past the lookahead table).
                if code >= 1 << length {
                    return None;
                }
                if length <= LOOKAHEAD as usize {
                    let shift = LOOKAHEAD as usize - length;
                    let first = (code as usize) << shift;
                    let entry = (length as u16) << 8 | u16::from(symbols[index as usize]);
                    lookahead[first..first + (1 << shift)].fill(entry);
                }
                code += 1;
                index += 1;
            }
            max_code[length] = code;
            code <<= 1;
        }
        Some(Huffman {
            lookahead,
            max_code,
            offset,
            symbols: symbols.to_vec(),
        })
    }
}

/// An AC table: the code, and the next [`SKIP_BITS`] bits read as AC coefficients — every
/// whole one (code and value bits) that fits, stepped over at once (a [`Skip`]). Two or
/// three coefficients a lookup halve the chain of dependent loads that bounds entropy
/// decoding.
struct AcTable {
    code: Huffman,
    skips: Box<[Skip; 1 << SKIP_BITS]>,
}

impl AcTable {
    fn new(code: Huffman) -> AcTable {
        let mut skips = Box::new([Skip::NONE; 1 << SKIP_BITS]);
        for (pattern, skip) in skips.iter_mut().enumerate() {
            let (mut used, mut advance) = (0u32, 0u32);
            let mut end_of_block = false;
            while used < SKIP_BITS {
                let rest = (pattern << used) & ((1 << SKIP_BITS) - 1);
                let entry = code.lookahead[rest >> (SKIP_BITS - LOOKAHEAD)];
                let (length, run, size) = (
                    u32::from(entry >> 8),
                    u32::from((entry >> 4) & 15),
                    u32::from(entry & 15),
                );
                if entry == 0 || used + length + size > SKIP_BITS {
                    break;
                }
                used += length + size;
                match (run, size) {
                    (15, 0) => advance += 16,
                    (_, 0) => {
                        end_of_block = true;
                        break;
                    }
                    _ => advance += run + 1,
                }
            }
            if used > 0 {
                *skip = Skip::new(used, advance, end_of_block);
            }
        }
        AcTable { code, skips }
    }
}

/// A DC table: the code, and the next [`SKIP_BITS`] bits read as a DC difference when its
/// code and value bits both fit (a [`DcStep`]): one lookup instead of a code, then a value.
struct DcTable {
    code: Huffman,
    steps: Box<[DcStep; 1 << SKIP_BITS]>,
}

impl DcTable {
    fn new(code: Huffman) -> DcTable {
        let mut steps = Box::new([DcStep::NONE; 1 << SKIP_BITS]);
        for (pattern, step) in steps.iter_mut().enumerate() {
            let entry = code.lookahead[pattern >> (SKIP_BITS - LOOKAHEAD)];
            let (length, size) = (u32::from(entry >> 8), u32::from(entry & 0xFF));
            // Sizes past 11 are invalid in a baseline DC table: left to the slow path, which refuses them.
            if entry == 0 || size > 11 || length + size > SKIP_BITS {
                continue;
            }
            let raw = (pattern as u32 >> (SKIP_BITS - length - size)) & ((1 << size) - 1);
            *step = DcStep::new(length + size, extend(raw, size));
        }
        DcTable { code, steps }
    }
}

/// A `steps` entry of a DC table: the difference in the high twelve bits, the bits it takes
/// (code and value, at most [`SKIP_BITS`]) in the low four; 0 when they do not fit.
#[derive(Clone, Copy)]
struct DcStep(i16);

impl DcStep {
    const NONE: DcStep = DcStep(0);

    fn new(bits: u32, difference: i32) -> DcStep {
        debug_assert!((1..=SKIP_BITS).contains(&bits) && difference.abs() < 1 << 11);
        DcStep((difference << 4) as i16 | bits as i16)
    }
    fn bits(self) -> u32 {
        (self.0 & 0x0F) as u32
    }
    fn difference(self) -> i32 {
        i32::from(self.0 >> 4)
    }
}

/// `size` raw bits as JPEG's signed value (Annex F "EXTEND").
#[inline]
fn extend(raw: u32, size: u32) -> i32 {
    if size == 0 {
        return 0;
    }
    let raw = raw as i32;
    if raw < 1 << (size - 1) {
        raw - (1 << size) + 1
    } else {
        raw
    }
}

/// The entropy-coded data as a stream of bits, with byte stuffing (`FF 00`) removed.
/// Past a marker (or the end) it reads zeros; `overrun` counts the zero bytes so the
/// caller can tell a scan that ran past its data.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    buffer: u64,
    count: u32,
    overrun: usize,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8]) -> Bits<'a> {
        Bits {
            data,
            pos: 0,
            buffer: 0,
            count: 0,
            overrun: 0,
        }
    }

    /// Tops the buffer up to at least 32 bits: a Huffman code (16) and its value (15).
    #[inline]
    fn refill(&mut self) {
        if self.count >= 32 {
            return;
        }
        self.refill_all();
    }

    /// Tops the buffer up to at least 56 bits, whatever it holds.
    #[inline]
    fn refill_all(&mut self) {
        // Fast path: eight bytes with no 0xFF among them go in with one load.
        if let Some(chunk) = self.data.get(self.pos..self.pos + 8) {
            let word = u64::from_be_bytes(chunk.try_into().expect("8 bytes"));
            // Bytes that are 0xFF have every bit set: detect any with the classic trick.
            let inverted = !word;
            let has_ff =
                (inverted.wrapping_sub(0x0101_0101_0101_0101)) & !inverted & 0x8080_8080_8080_8080;
            if has_ff == 0 {
                // The whole bytes that fit (none when 56 or more bits are held): no branch.
                // (`count` may be 64 after the byte loop; then nothing is taken and the shift of
                // zero wraps harmlessly.)
                let take = 63u32.saturating_sub(self.count) / 8;
                let bytes = word & !(u64::MAX >> (8 * take));
                self.buffer |= bytes.wrapping_shr(self.count);
                self.count += 8 * take;
                self.pos += take as usize;
                return;
            }
        }
        while self.count <= 56 {
            let byte = match self.data.get(self.pos) {
                Some(&0xFF) => match self.data.get(self.pos + 1) {
                    Some(&0x00) => {
                        self.pos += 2;
                        0xFF
                    }
                    // A marker (or the end): stay in front of it, feed zeros.
                    _ => {
                        self.overrun += 1;
                        0
                    }
                },
                Some(&b) => {
                    self.pos += 1;
                    b
                }
                None => {
                    self.overrun += 1;
                    0
                }
            };
            self.buffer |= u64::from(byte) << (56 - self.count);
            self.count += 8;
        }
    }

    #[inline]
    fn consume(&mut self, bits: u32) {
        self.buffer <<= bits;
        self.count -= bits;
    }

    /// The next Huffman symbol. Needs 16 bits in the buffer.
    #[inline]
    fn symbol(&mut self, table: &Huffman) -> Option<u8> {
        let entry = table.lookahead[(self.buffer >> (64 - LOOKAHEAD)) as usize];
        if entry != 0 {
            self.consume(u32::from(entry >> 8));
            return Some(entry as u8);
        }
        let mut length = LOOKAHEAD as usize + 1;
        loop {
            let code = (self.buffer >> (64 - length)) as i32;
            if code < table.max_code[length] {
                self.consume(length as u32);
                let index = code + table.offset[length];
                return table.symbols.get(usize::try_from(index).ok()?).copied();
            }
            length += 1;
            if length > 16 {
                return None;
            }
        }
    }

    /// `size` raw bits as JPEG's signed value (Annex F "EXTEND"). Needs `size` bits.
    #[inline]
    fn signed(&mut self, size: u32) -> i32 {
        if size == 0 {
            return 0;
        }
        let raw = (self.buffer >> (64 - size)) as u32;
        self.consume(size);
        extend(raw, size)
    }

    /// Skips to the byte after the next restart marker, which must be `RST(expected)`.
    fn restart(&mut self, expected: u8) -> Option<()> {
        // Whatever is left in the buffer is padding of the interval just ended.
        let at = self.data.get(self.pos..)?;
        let skip = at.iter().position(|&b| b != 0xFF).unwrap_or(at.len());
        let marker = *at.get(skip)?;
        if skip == 0 || marker != 0xD0 + expected {
            return None;
        }
        self.pos += skip + 1;
        self.buffer = 0;
        self.count = 0;
        self.overrun = 0;
        Some(())
    }
}

/// Decodes the scan's DC coefficients into one plane per component, block by block
/// (`mcus_x * h` blocks a row, `mcus_y * v` rows), as pixel values 0..=255.
fn decode_scan(parser: &Parser, frame: &Frame, data: &[u8]) -> Option<Vec<Vec<u8>>> {
    // Stored as RGB rather than YCbCr: said by Adobe's marker, or by the ids 'R', 'G', 'B'.
    let ids: Vec<u8> = frame.components.iter().map(|c| c.id).collect();
    if frame.components.len() == 3 && (parser.adobe_transform == Some(0) || ids == b"RGB") {
        return None;
    }
    struct Plan<'t> {
        dc: &'t DcTable,
        ac: &'t AcTable,
        quant: i32,
        h: usize,
        v: usize,
        stride: usize,
    }
    let (mcus_x, mcus_y) = (frame.mcus_x(), frame.mcus_y());
    // A single-component scan is not interleaved: its "MCU" is one block, and only the
    // blocks covering the picture are coded.
    let single = frame.components.len() == 1;
    let (units_x, units_y) = if single {
        (frame.width.div_ceil(8), frame.height.div_ceil(8))
    } else {
        (mcus_x, mcus_y)
    };
    let mut plans = Vec::with_capacity(frame.components.len());
    for (component, tables) in frame.components.iter().zip(&parser.scan) {
        let (h, v) = if single {
            (1, 1)
        } else {
            (component.h, component.v)
        };
        plans.push(Plan {
            dc: parser.dc_tables.get(tables.dc_table)?.as_ref()?,
            ac: parser.ac_tables.get(tables.ac_table)?.as_ref()?,
            quant: i32::from(parser.quant_dc.get(component.quant).copied().flatten()?),
            h,
            v,
            stride: units_x * h,
        });
    }
    let mut planes: Vec<Vec<u8>> = plans
        .iter()
        .map(|p| vec![0u8; units_x * p.h * units_y * p.v])
        .collect();
    // Wrapping: a hostile file may add ±2047 per block for millions of blocks.
    let mut predictions = vec![0i32; plans.len()];
    let mut bits = Bits::new(data);
    let mut until_restart = parser.restart_interval;
    let mut next_restart = 0u8;
    for unit_y in 0..units_y {
        for unit_x in 0..units_x {
            if parser.restart_interval > 0 {
                if until_restart == 0 {
                    bits.restart(next_restart)?;
                    next_restart = (next_restart + 1) % 8;
                    predictions.fill(0);
                    until_restart = parser.restart_interval;
                }
                until_restart -= 1;
            }
            for (c, plan) in plans.iter().enumerate() {
                for block_y in 0..plan.v {
                    for block_x in 0..plan.h {
                        // 32 bits hold the DC code (16) and its value (11). Always topped up:
                        // whether it is needed depends on the last block's bits, a branch the
                        // processor would guess wrong about once a block.
                        bits.refill_all();
                        let step = plan.dc.steps[(bits.buffer >> (64 - SKIP_BITS)) as usize];
                        let difference = if step.bits() != 0 {
                            bits.consume(step.bits());
                            step.difference()
                        } else {
                            let size = u32::from(bits.symbol(&plan.dc.code)?);
                            if size > 11 {
                                return None;
                            }
                            bits.signed(size)
                        };
                        predictions[c] = predictions[c].wrapping_add(difference);
                        skip_ac(&mut bits, plan.ac)?;
                        let mean = (i64::from(predictions[c]) * i64::from(plan.quant) + 4)
                            .div_euclid(8)
                            + 128;
                        let row = unit_y * plan.v + block_y;
                        let column = unit_x * plan.h + block_x;
                        planes[c][row * plan.stride + column] = mean.clamp(0, 255) as u8;
                    }
                }
            }
        }
        // Past the end of the data by more than the padding of the last byte: the file is
        // cut short, and jpeg-decoder decides how to report it.
        if bits.overrun > 16 {
            return None;
        }
    }
    Some(planes)
}

/// Table steps taken per refill: a refill leaves at least 56 bits, and each step drops at
/// most [`SKIP_BITS`]. Refilling on a fixed beat rather than when the buffer runs low keeps
/// an unpredictable branch out of the loop.
const STEPS_PER_REFILL: u32 = 4;
const _: () = assert!(STEPS_PER_REFILL * SKIP_BITS <= 56);

/// Steps over one block's 63 AC coefficients.
#[inline]
fn skip_ac(bits: &mut Bits, table: &AcTable) -> Option<()> {
    let mut k = 1;
    'refill: loop {
        bits.refill_all();
        for _ in 0..STEPS_PER_REFILL {
            let skip = table.skips[(bits.buffer >> (64 - SKIP_BITS)) as usize];
            // Whole coefficients that stay inside the block. A step reaching coefficient 63
            // goes the slow way: the bits after the 63rd belong to the next block, however
            // much they look like an end of block.
            if skip.bits() != 0 && k + skip.advance() < 64 {
                bits.buffer = bits.buffer.wrapping_shl(u32::from(skip.0));
                bits.count -= skip.bits();
                k += skip.advance();
                if skip.ends_block() {
                    return Some(());
                }
                continue;
            }
            // One coefficient at a time (a long code, or the block's last ones).
            if k >= 64 {
                return (k == 64).then_some(());
            }
            bits.refill();
            let run_size = bits.symbol(&table.code)?;
            let (run, size) = (u32::from(run_size >> 4), u32::from(run_size & 15));
            if size == 0 {
                if run != 15 {
                    return Some(()); // end of block
                }
                k += 16;
            } else {
                bits.consume(size);
                k += run + 1;
            }
            if k > 64 {
                return None;
            }
            continue 'refill;
        }
    }
}

/// Puts the planes together at the luma block grid and converts YCbCr to RGB (JFIF).
fn to_rgb(frame: &Frame, planes: &[Vec<u8>]) -> DcPicture {
    let (width, height) = (frame.width.div_ceil(8), frame.height.div_ceil(8));
    let mut rgb = Vec::with_capacity(width * height * 3);
    let single = frame.components.len() == 1;
    let stride = |c: &Component| {
        if single {
            frame.width.div_ceil(8)
        } else {
            frame.mcus_x() * c.h
        }
    };
    if single {
        for &l in &planes[0][..] {
            rgb.extend_from_slice(&[l, l, l]);
        }
        // The plane has exactly width x height entries in the single-component case.
        return DcPicture {
            width: width as u32,
            height: height as u32,
            rgb,
        };
    }
    let [y_c, cb_c, cr_c] = [0, 1, 2].map(|i| &frame.components[i]);
    let (ys, cbs, crs) = (stride(y_c), stride(cb_c), stride(cr_c));
    for row in 0..height {
        let plane_row = |c: &Component| row * c.v / frame.v_max;
        let (yr, cbr, crr) = (
            plane_row(y_c) * ys,
            plane_row(cb_c) * cbs,
            plane_row(cr_c) * crs,
        );
        for column in 0..width {
            let plane_column = |c: &Component| column * c.h / frame.h_max;
            let y = i32::from(planes[0][yr + plane_column(y_c)]);
            let cb = i32::from(planes[1][cbr + plane_column(cb_c)]) - 128;
            let cr = i32::from(planes[2][crr + plane_column(cr_c)]) - 128;
            // JFIF's matrix in 16.16 fixed point.
            let r = y + ((91_881 * cr + 32_768) >> 16);
            let g = y - ((22_554 * cb + 46_802 * cr - 32_768) >> 16);
            let b = y + ((116_130 * cb + 32_768) >> 16);
            rgb.extend_from_slice(&[r, g, b].map(|v| v.clamp(0, 255) as u8));
        }
    }
    DcPicture {
        width: width as u32,
        height: height as u32,
        rgb,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A smooth test picture encoded by `image`'s encoder, of `width` x `height`.
    fn jpeg(width: u32, height: u32, grey: bool) -> Vec<u8> {
        let picture = ::image::RgbImage::from_fn(width, height, |x, y| {
            ::image::Rgb([
                (x * 255 / width) as u8,
                (y * 255 / height) as u8,
                ((x + y) % 200) as u8,
            ])
        });
        let mut out = Vec::new();
        let encoder = ::image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90);
        if grey {
            ::image::DynamicImage::ImageRgb8(picture)
                .into_luma8()
                .write_with_encoder(encoder)
                .unwrap();
        } else {
            picture.write_with_encoder(encoder).unwrap();
        }
        out
    }

    /// The reference: jpeg-decoder at 1/8 scale.
    fn reference(data: &[u8]) -> (u32, u32, Vec<u8>) {
        let mut decoder = jpeg_decoder::Decoder::new(data);
        let (w, h) = decoder.scale(1, 1).unwrap();
        let pixels = decoder.decode().unwrap();
        let rgb = if pixels.len() == usize::from(w) * usize::from(h) {
            pixels.iter().flat_map(|&l| [l, l, l]).collect()
        } else {
            pixels
        };
        (u32::from(w), u32::from(h), rgb)
    }

    fn mean_difference(a: &[u8], b: &[u8]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(&x, &y)| f64::from(x.abs_diff(y)))
            .sum::<f64>()
            / a.len() as f64
    }

    #[test]
    fn matches_jpeg_decoder_at_one_eighth() {
        for (w, h, grey) in [
            (1000, 700, false),
            (333, 129, false),
            (400, 300, true),
            (17, 9, false),
        ] {
            let data = jpeg(w, h, grey);
            let ours = decode(&data).expect("a baseline JPEG");
            let (rw, rh, rgb) = reference(&data);
            assert_eq!((ours.width, ours.height), (rw, rh), "{w}x{h}");
            let diff = mean_difference(&ours.rgb, &rgb);
            // jpeg-decoder upsamples chroma smoothly and rounds differently: small, not zero.
            assert!(diff < 3.0, "{w}x{h} grey={grey}: mean difference {diff}");
        }
    }

    #[test]
    fn blocks_coded_to_their_last_coefficient_are_followed() {
        // White noise at quality 100: nearly every block codes all 63 AC coefficients and
        // has no end-of-block code, so the next block's DC code follows the 63rd at once —
        // the case the fast path must leave to the slow one.
        let mut state = 0x2545_f491_u32;
        let picture = ::image::RgbImage::from_fn(256, 192, |_, _| {
            let mut channel = || {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 24) as u8
            };
            ::image::Rgb([channel(), channel(), channel()])
        });
        let mut data = Vec::new();
        picture
            .write_with_encoder(::image::codecs::jpeg::JpegEncoder::new_with_quality(
                &mut data, 100,
            ))
            .unwrap();
        let ours = decode(&data).expect("a baseline JPEG");
        let (rw, rh, rgb) = reference(&data);
        assert_eq!((ours.width, ours.height), (rw, rh));
        let diff = mean_difference(&ours.rgb, &rgb);
        assert!(diff < 3.0, "mean difference {diff}");
    }

    #[test]
    fn leaves_what_it_does_not_handle_to_jpeg_decoder() {
        let data = jpeg(64, 64, false);
        // Progressive: SOF0 turned into SOF2.
        let mut progressive = data.clone();
        let sof = progressive
            .windows(2)
            .position(|w| w == [0xFF, 0xC0])
            .unwrap();
        progressive[sof + 1] = 0xC2;
        assert_eq!(decode(&progressive), None);
        // Not a JPEG, a cut header, a cut scan.
        assert_eq!(decode(b"\x89PNG\r\n"), None);
        assert_eq!(decode(&data[..sof + 6]), None);
        assert_eq!(decode(&data[..data.len() / 2]), None);
    }

    #[test]
    fn every_prefix_and_flipped_byte_is_handled_without_a_panic() {
        let data = jpeg(48, 40, false);
        for end in 0..data.len() {
            let _ = decode(&data[..end]);
        }
        for i in 0..data.len() {
            let mut bent = data.clone();
            bent[i] ^= 0x5A;
            let _ = decode(&bent);
        }
    }

    #[test]
    fn a_huffman_table_with_more_codes_than_fit_is_refused() {
        // Three codes of one bit, five of two bits: only two and four fit.
        let mut counts = [0u8; 16];
        counts[0] = 3;
        assert!(Huffman::new(&counts, &[1, 2, 3]).is_none());
        let mut counts = [0u8; 16];
        counts[1] = 5;
        assert!(Huffman::new(&counts, &[1, 2, 3, 4, 5]).is_none());
        // The fuzzer's find: one byte of a DHT's counts changed in the restarts fixture.
        let mut file = std::fs::read(format!(
            "{}/tests/fixtures/restarts.jpg",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("fixture");
        let at = 0x09EC % file.len();
        file[at] = 0x06;
        assert_eq!(decode(&file), None);
    }

    #[test]
    fn restart_intervals_are_followed() {
        // `image` cannot write restart markers; the fixtures were made with libjpeg-turbo, the
        // same picture with and without them: `convert -size 100x70 plasma:fractal r.ppm;
        // cjpeg -quality 80 -sample 2x2 [-restart 2B] r.ppm`.
        let fixture = |name: &str| {
            std::fs::read(format!(
                "{}/tests/fixtures/{name}",
                env!("CARGO_MANIFEST_DIR")
            ))
            .expect("fixture")
        };
        let (with, without) = (fixture("restarts.jpg"), fixture("no-restarts.jpg"));
        assert!(with.windows(2).any(|w| w == [0xFF, 0xDD]), "a DRI marker");
        let ours = decode(&with).expect("baseline with restarts");
        assert_eq!(Some(&ours), decode(&without).as_ref());
        let (rw, rh, rgb) = reference(&with);
        assert_eq!((ours.width, ours.height), (rw, rh));
        // 4:2:0 chroma of a noisy picture: jpeg-decoder interpolates it, we repeat it.
        let diff = mean_difference(&ours.rgb, &rgb);
        assert!(diff < 8.0, "mean difference {diff}");
    }
}
