//! The structural check of a camera JPEG's scan, run before it is decoded: its markers, and
//! the Huffman codes of every MCU.
//!
//! A decoder that meets garbage inside the scan often decodes it into a damaged picture
//! without an error (zune-jpeg let 36 of 200 random-garbage frames through). Two things
//! catch it here, both cheaper than a decode:
//!
//! - Markers. Inside a scan every 0xFF is followed by 0x00 (a stuffed byte), 0xFF (fill), a
//!   restart marker RST0–RST7 in order, or EOI at the end. Random bytes written over the
//!   scan, or the halves of two frames glued together (a torn USB transfer), break that:
//!   another marker appears, the restart markers skip or repeat, or there are too few or
//!   too many of them for the picture's MCUs when the camera sets a restart interval (most
//!   UVC cameras do), or EOI comes before the end of the frame.
//! - Huffman codes (garbage without an 0xFF byte). The entropy-coded data is walked MCU by
//!   MCU, symbols only (no dequantization, no IDCT): every DC code must exist in its table
//!   with a magnitude category ≤ 11, every AC code must exist, have a category ≤ 10 and not
//!   run past coefficient 63 (what ffmpeg reports as "error dc" and "error count: 64").
//!   Each restart interval must hold exactly its MCUs, the scan all of them, and no more
//!   than [`MAX_LEFTOVER`] whole bytes may remain before the next marker (the padding
//!   bits of the last byte are not judged: libjpeg and ffmpeg ignore them too).
//!
//! Scope: baseline and extended sequential Huffman JPEGs (SOF0/SOF1, 8-bit) with one
//! interleaved scan, any sampling factors, with or without a restart interval: what
//! cameras send. Huffman tables 0 and 1 that no DHT defines are the standard ones of
//! Annex K, as in MJPEG without DHT (ffmpeg and zune-jpeg do the same). Progressive,
//! multi-scan, arithmetic-coded and 12-bit JPEGs are left to the decoder (`Ok`).
//!
//! Cost: one pass over the bytes for the markers, one for the codes, a few KB of tables on
//! the stack, nothing allocated unless the frame is damaged (the reason is a `String`).
//! `cargo bench --bench mjpeg` prints it beside a decode.

/// What is wrong with a JPEG, in a few words for the log and the counter.
pub type Damage = String;

/// Whole bytes that may remain after a restart interval's or the scan's last MCU, before
/// the next marker. Encoders leave none (jpeg-encoder and ffmpeg's mjpeg encoder measured:
/// only the padding bits of the last byte); a little slack for camera encoders that flush
/// a byte or two more, while a frame whose codes end early by hundreds of bytes is damage.
pub const MAX_LEFTOVER: usize = 4;

/// Bits looked up at once when decoding a Huffman code; longer codes take the slow path.
const FAST_BITS: u32 = 9;

/// One frame component as the scan uses it.
#[derive(Clone, Copy, Default)]
struct Component {
    id: u8,
    /// Sampling factors, 1–4.
    h: u8,
    v: u8,
}

/// Where a DHT segment defined one table: its 16 code counts and its symbols.
type TableBytes<'a> = (&'a [u8], &'a [u8]);

/// Checks the markers of `jpeg` up to and through its first scan, then the Huffman codes of
/// every MCU of that scan.
pub fn check(jpeg: &[u8]) -> Result<(), Damage> {
    if jpeg.len() < 4 || jpeg[0] != 0xFF || jpeg[1] != 0xD8 {
        return Err("no SOI marker at the start".into());
    }
    let mut at = 2;
    let mut restart_interval = 0u32;
    let mut mcus = None;
    let mut components = [Component::default(); 4];
    let mut frame_components = 0;
    // [class: 0 DC, 1 AC][table id]: the last definition before the scan.
    let mut defined: [[Option<TableBytes>; 4]; 2] = [[None; 4]; 2];
    // Header segments up to SOS: each is FF xx LEN(2, big-endian, counting itself).
    let (scan_start, sos) = loop {
        while jpeg.get(at) == Some(&0xFF) && jpeg.get(at + 1) == Some(&0xFF) {
            at += 1; // fill bytes before a marker
        }
        let (Some(&0xFF), Some(&marker)) = (jpeg.get(at), jpeg.get(at + 1)) else {
            return Err(format!("no marker at byte {at} of the header"));
        };
        if marker == 0xD9 || (0xD0..=0xD7).contains(&marker) || marker == 0x00 {
            return Err(format!("marker 0xFF{marker:02X} before the scan"));
        }
        let len = match jpeg.get(at + 2..at + 4) {
            Some(b) => u16::from_be_bytes([b[0], b[1]]) as usize,
            None => return Err("truncated in the header".into()),
        };
        let body = jpeg
            .get(at + 4..at + 2 + len)
            .filter(|_| len >= 2)
            .ok_or_else(|| format!("segment 0xFF{marker:02X} runs past the end"))?;
        match marker {
            // SOF0/1 (baseline, extended sequential): size and sampling → MCU count.
            0xC0 | 0xC1 => {
                mcus = Some(mcu_count(body)?);
                // 12-bit samples: AC categories go to 14; the decoder judges them.
                if body[0] != 8 {
                    return Ok(());
                }
                frame_components = body[5] as usize;
                for (c, spec) in components.iter_mut().zip(body[6..].chunks_exact(3)) {
                    *c = Component {
                        id: spec[0],
                        h: spec[1] >> 4,
                        v: spec[1] & 0x0F,
                    };
                }
            }
            // Progressive or other processes: several scans, not a camera frame's shape.
            0xC2 | 0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => return Ok(()),
            0xC4 => read_dht(body, &mut defined)?,
            0xDD if body.len() >= 2 => {
                restart_interval = u16::from_be_bytes([body[0], body[1]]) as u32
            }
            0xDA => {
                // A scan of fewer components than the frame: the frame has several scans
                // (non-interleaved), not a camera's shape; the decoder judges it.
                if body.first().map(|&n| n as usize) != Some(frame_components) {
                    return Ok(());
                }
                break (at + 2 + len, body);
            }
            _ => {}
        }
        at += 2 + len;
    };
    let mcus = mcus.ok_or("no frame header (SOF) before the scan")?;
    check_markers(jpeg, scan_start, restart_interval, mcus)?;
    check_codes(
        jpeg,
        scan_start,
        sos,
        &components,
        &defined,
        restart_interval,
        mcus,
    )
}

/// The scan's markers: FF 00 stuffing, FF FF fill, RSTn in order and as many as the
/// restart interval asks for, EOI at the end (zeros after it are camera padding).
fn check_markers(
    jpeg: &[u8],
    scan_start: usize,
    restart_interval: u32,
    mcus: u32,
) -> Result<(), Damage> {
    let mut restarts = 0u32;
    let mut i = scan_start;
    loop {
        let Some(off) = memchr_ff(&jpeg[i..]) else {
            return Err("no EOI: the frame is truncated".into());
        };
        let p = i + off;
        let Some(&next) = jpeg.get(p + 1) else {
            return Err("no EOI: the frame is truncated".into());
        };
        match next {
            0x00 | 0xFF => i = p + 1,
            0xD0..=0xD7 => {
                let expected = 0xD0 + (restarts % 8) as u8;
                if next != expected {
                    return Err(format!(
                        "restart marker RST{} where RST{} belongs",
                        next - 0xD0,
                        expected - 0xD0
                    ));
                }
                restarts += 1;
                i = p + 2;
            }
            0xD9 => {
                // Cameras may pad a frame after EOI with zeros; anything else is more data.
                if jpeg[p + 2..].iter().any(|&b| b != 0) {
                    return Err(format!(
                        "EOI {} bytes before the end of the frame",
                        jpeg.len() - p - 2
                    ));
                }
                break;
            }
            other => return Err(format!("marker 0xFF{other:02X} inside the scan")),
        }
    }
    if restart_interval > 0 {
        let expected = mcus.div_ceil(restart_interval) - 1;
        if restarts != expected {
            return Err(format!(
                "{restarts} restart markers in the scan, {expected} belong to {mcus} MCUs"
            ));
        }
    }
    Ok(())
}

/// Decodes every MCU's Huffman symbols (see the module doc for what is judged).
fn check_codes(
    jpeg: &[u8],
    scan_start: usize,
    sos: &[u8],
    components: &[Component; 4],
    defined: &[[Option<TableBytes>; 4]; 2],
    restart_interval: u32,
    mcus: u32,
) -> Result<(), Damage> {
    let count = sos[0] as usize;
    if !(1..=4).contains(&count) {
        return Err(format!("a scan of {count} components (1–4)"));
    }
    let selectors = sos
        .get(1..1 + 2 * count)
        .ok_or("scan header's components run past it")?;
    // [class][id]: built only for the tables the scan selects.
    let mut tables: [[Option<Huffman>; 4]; 2] = [[None; 4]; 2];
    // Per scan component: its DC and AC table ids and its blocks per MCU.
    let mut plan = [(0usize, 0usize, 0u32); 4];
    let mut blocks_per_mcu = 0;
    for (slot, sel) in plan.iter_mut().zip(selectors.chunks_exact(2)) {
        let c = components[..count]
            .iter()
            .find(|c| c.id == sel[0])
            .ok_or_else(|| format!("scan component {} is not in the frame", sel[0]))?;
        if !(1..=4).contains(&c.h) || !(1..=4).contains(&c.v) {
            return Err(format!("sampling factors {}x{} (1–4 each)", c.h, c.v));
        }
        let (dc, ac) = ((sel[1] >> 4) as usize, (sel[1] & 0x0F) as usize);
        for (class, id) in [(0, dc), (1, ac)] {
            if id > 3 {
                return Err(format!("Huffman table selector {id} (0–3)"));
            }
            if tables[class][id].is_none() {
                let (counts, symbols) = defined[class][id]
                    .or_else(|| standard_table(class, id))
                    .ok_or_else(|| {
                        let kind = ["DC", "AC"][class];
                        format!("the scan uses {kind} Huffman table {id}, which no DHT defines")
                    })?;
                tables[class][id] = Some(Huffman::new(counts, symbols)?);
            }
        }
        // A single-component scan is not interleaved: its MCU is one 8×8 block.
        let blocks = if count == 1 { 1 } else { (c.h * c.v) as u32 };
        blocks_per_mcu += blocks;
        *slot = (dc, ac, blocks);
    }
    if blocks_per_mcu > 10 {
        return Err(format!("{blocks_per_mcu} blocks per MCU (10 at most)"));
    }
    let table = |class: usize, id: usize| {
        tables[class][id]
            .as_ref()
            .expect("every selected table was built above")
    };
    let mut plan_tables = [(table(0, plan[0].0), table(1, plan[0].1), 0); 4];
    for (t, &(dc, ac, blocks)) in plan_tables.iter_mut().zip(&plan[..count]) {
        *t = (table(0, dc), table(1, ac), blocks);
    }
    let plan = &plan_tables[..count];

    let per_interval = if restart_interval > 0 {
        restart_interval
    } else {
        mcus
    };
    let mut done = 0u32;
    let mut at = scan_start;
    let mut interval = 0u32;
    loop {
        let mut bits = Bits::new(jpeg, at);
        let end = mcus.min(done + per_interval);
        // The data that ends: a restart interval's (numbered from 0) or the scan's last.
        let part = || match end < mcus {
            true => format!("restart interval {interval}"),
            false => "scan".to_string(),
        };
        for mcu in done..end {
            for &(dc, ac, blocks) in plan {
                for _ in 0..blocks {
                    if let Err(why) = bits.block(dc, ac) {
                        // Codes read from the zeros past the data: the data ran out.
                        if bits.overrun() {
                            return Err(format!("{} ends after {mcu} of {mcus} MCUs", part()));
                        }
                        return Err(format!("{why} in MCU {mcu}"));
                    }
                }
            }
            if bits.overrun() {
                return Err(format!("{} ends after {mcu} of {mcus} MCUs", part()));
            }
        }
        done = end;
        let (left, marker_at) = bits.to_marker();
        if left > MAX_LEFTOVER {
            return Err(format!(
                "{} ends after {done} of {mcus} MCUs with {left} bytes left",
                part()
            ));
        }
        let mut p = marker_at;
        while jpeg.get(p + 1) == Some(&0xFF) {
            p += 1;
        }
        match jpeg.get(p + 1) {
            Some(0xD0..=0xD7) if done < mcus => {
                at = p + 2;
                interval += 1;
            }
            Some(0xD9) if done == mcus => return Ok(()),
            Some(0xD9) => return Err(format!("scan ends after {done} of {mcus} MCUs")),
            Some(&m) => return Err(format!("marker 0xFF{m:02X} after {done} of {mcus} MCUs")),
            None => return Err("no EOI: the frame is truncated".into()),
        }
    }
}

/// Records where a DHT segment defines each table (a segment may hold several).
fn read_dht<'a>(
    mut body: &'a [u8],
    defined: &mut [[Option<TableBytes<'a>>; 4]; 2],
) -> Result<(), Damage> {
    while let Some((&class_id, rest)) = body.split_first() {
        let (class, id) = ((class_id >> 4) as usize, (class_id & 0x0F) as usize);
        if class > 1 || id > 3 {
            return Err(format!("DHT defines table class {class} id {id}"));
        }
        let counts = rest.get(..16).ok_or("DHT runs past its segment")?;
        let n: usize = counts.iter().map(|&c| c as usize).sum();
        if n > 256 {
            return Err(format!("DHT table of {n} codes (256 at most)"));
        }
        let symbols = rest.get(16..16 + n).ok_or("DHT runs past its segment")?;
        defined[class][id] = Some((counts, symbols));
        body = &rest[16 + n..];
    }
    Ok(())
}

/// The standard tables of Annex K (K.3–K.6) for ids 0 (luma) and 1 (chroma).
fn standard_table(class: usize, id: usize) -> Option<TableBytes<'static>> {
    match (class, id) {
        (0, 0) => Some((&STD_DC_LUMA_COUNTS, &STD_DC_SYMBOLS)),
        (0, 1) => Some((&STD_DC_CHROMA_COUNTS, &STD_DC_SYMBOLS)),
        (1, 0) => Some((&STD_AC_LUMA_COUNTS, &STD_AC_LUMA_SYMBOLS)),
        (1, 1) => Some((&STD_AC_CHROMA_COUNTS, &STD_AC_CHROMA_SYMBOLS)),
        _ => None,
    }
}

/// A Huffman table for decoding: a lookup of the next [`FAST_BITS`] bits for short codes,
/// the canonical code ranges per length (JPEG F.2.2.3) for longer ones.
#[derive(Clone, Copy)]
struct Huffman {
    /// Indexed by the next FAST_BITS bits: code length << 8 | symbol; 0 when no code of
    /// FAST_BITS bits or fewer starts them.
    fast: [u16; 1 << FAST_BITS],
    /// The largest code of each length (index 1–16); -1 when there is none.
    max_code: [i32; 17],
    /// Per length: the index in `symbols` of its first code, minus that code.
    offset: [i32; 17],
    symbols: [u8; 256],
}

impl Huffman {
    fn new(counts: &[u8], symbols: &[u8]) -> Result<Huffman, Damage> {
        let mut t = Huffman {
            fast: [0; 1 << FAST_BITS],
            max_code: [-1; 17],
            offset: [0; 17],
            symbols: [0; 256],
        };
        t.symbols[..symbols.len()].copy_from_slice(symbols);
        let (mut code, mut k) = (0u32, 0usize);
        for len in 1..=16u32 {
            let n = counts[len as usize - 1] as usize;
            t.offset[len as usize] = k as i32 - code as i32;
            for &symbol in &symbols[k..k + n] {
                if code >= 1 << len {
                    return Err("a DHT table has more codes than its lengths allow".into());
                }
                if len <= FAST_BITS {
                    let shift = FAST_BITS - len;
                    let first = (code << shift) as usize;
                    t.fast[first..first + (1 << shift)].fill((len << 8) as u16 | symbol as u16);
                }
                code += 1;
            }
            k += n;
            if n > 0 {
                t.max_code[len as usize] = code as i32 - 1;
            }
            code <<= 1;
        }
        Ok(t)
    }
}

/// Reads the entropy-coded bits of one restart interval: 0xFF00 is a 0xFF byte, and at a
/// marker (or the end of the data) it stops and feeds zeros, counting them, so that a code
/// read past the data shows as [`Bits::overrun`] instead of a panic or a loop.
struct Bits<'a> {
    data: &'a [u8],
    /// The next byte to load.
    pos: usize,
    /// Loaded bits, MSB first; `count` of them are valid.
    buf: u64,
    count: u32,
    /// How many of the last loaded bits are zeros fed past the data.
    fed: u32,
    /// `pos` is at a marker (or the end): nothing more is loaded from the data.
    at_marker: bool,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8], pos: usize) -> Self {
        Bits {
            data,
            pos,
            buf: 0,
            count: 0,
            fed: 0,
            at_marker: false,
        }
    }

    /// Loads bytes until more than 56 bits are valid.
    #[inline]
    fn refill(&mut self) {
        while self.count <= 56 {
            if self.at_marker {
                let add = (64 - self.count) & !7;
                self.count += add;
                self.fed += add;
                return;
            }
            // Eight bytes without an 0xFF: as many as fit at once.
            if let Some(chunk) = self.data.get(self.pos..self.pos + 8) {
                let x = u64::from_be_bytes(chunk.try_into().expect("a slice of 8 bytes"));
                let inverted = !x;
                let has_ff = inverted.wrapping_sub(0x0101_0101_0101_0101)
                    & !inverted
                    & 0x8080_8080_8080_8080;
                if has_ff == 0 {
                    let n = (64 - self.count) / 8; // 1–8
                    self.buf |= (x >> (64 - 8 * n)) << (64 - self.count - 8 * n);
                    self.pos += n as usize;
                    self.count += 8 * n;
                    return;
                }
            }
            match self.data.get(self.pos) {
                None => self.at_marker = true,
                Some(&0xFF) => {
                    let mut p = self.pos + 1;
                    while self.data.get(p) == Some(&0xFF) {
                        p += 1;
                    }
                    if self.data.get(p) == Some(&0x00) {
                        self.push(0xFF);
                        self.pos = p + 1;
                    } else {
                        self.at_marker = true;
                    }
                }
                Some(&b) => {
                    self.push(b);
                    self.pos += 1;
                }
            }
        }
    }

    #[inline]
    fn push(&mut self, byte: u8) {
        self.buf |= (byte as u64) << (56 - self.count);
        self.count += 8;
    }

    /// Drops `n` bits (at most `count`, which `block` keeps above 31 before each code).
    #[inline]
    fn consume(&mut self, n: u32) {
        self.buf <<= n;
        self.count -= n;
    }

    /// Bits were read past the end of the interval's data.
    #[inline]
    fn overrun(&self) -> bool {
        self.fed > self.count
    }

    /// Decodes one Huffman code; `None` when no code of the table starts the next bits.
    #[inline]
    fn symbol(&mut self, table: &Huffman) -> Option<u8> {
        let entry = table.fast[(self.buf >> (64 - FAST_BITS)) as usize];
        if entry != 0 {
            self.consume((entry >> 8) as u32);
            return Some(entry as u8);
        }
        let next16 = (self.buf >> 48) as i32;
        for len in FAST_BITS + 1..=16 {
            let code = next16 >> (16 - len);
            if code <= table.max_code[len as usize] {
                self.consume(len);
                let index = table.offset[len as usize] + code;
                return table.symbols.get(usize::try_from(index).ok()?).copied();
            }
        }
        None
    }

    /// Walks one 8×8 block's codes: a DC difference, then AC run/size pairs up to EOB or
    /// coefficient 63.
    #[inline]
    fn block(&mut self, dc: &Huffman, ac: &Huffman) -> Result<(), &'static str> {
        // A code (≤ 16 bits) and its extra bits (≤ 11) fit in what a refill leaves.
        if self.count < 32 {
            self.refill();
        }
        let category = self.symbol(dc).ok_or("no Huffman code for DC")?;
        if category > 11 {
            return Err("DC magnitude category above 11");
        }
        self.consume(category as u32);
        let mut k = 1u32;
        while k < 64 {
            if self.count < 32 {
                self.refill();
            }
            let rs = self.symbol(ac).ok_or("no Huffman code for AC")?;
            let (run, size) = ((rs >> 4) as u32, (rs & 0x0F) as u32);
            if size == 0 {
                match run {
                    0 => return Ok(()), // EOB
                    15 => k += 16,      // ZRL: 16 zeros
                    _ => return Err("AC symbol with a run and no size"),
                }
                if k > 64 {
                    return Err("AC run past coefficient 63");
                }
                continue;
            }
            if size > 10 {
                return Err("AC magnitude category above 10");
            }
            k += run;
            if k > 63 {
                return Err("AC run past coefficient 63");
            }
            self.consume(size);
            k += 1;
        }
        Ok(())
    }

    /// After an interval's last MCU: the whole bytes left before the next marker (the
    /// partial byte's padding bits do not count) and where that marker starts.
    fn to_marker(&self) -> (usize, usize) {
        let mut left = (self.count.saturating_sub(self.fed) / 8) as usize;
        let mut p = self.pos;
        if self.at_marker {
            return (left, p);
        }
        loop {
            match self.data.get(p) {
                None => return (left, p),
                Some(&0xFF) => {
                    let mut q = p + 1;
                    while self.data.get(q) == Some(&0xFF) {
                        q += 1;
                    }
                    if self.data.get(q) != Some(&0x00) {
                        return (left, p);
                    }
                    p = q + 1;
                }
                Some(_) => p += 1,
            }
            left += 1;
        }
    }
}

/// The number of MCUs of an interleaved scan from a SOF segment's body.
fn mcu_count(sof: &[u8]) -> Result<u32, Damage> {
    if sof.len() < 6 {
        return Err("frame header too short".into());
    }
    let height = u16::from_be_bytes([sof[1], sof[2]]) as u32;
    let width = u16::from_be_bytes([sof[3], sof[4]]) as u32;
    let components = sof[5] as usize;
    let specs = sof
        .get(6..6 + 3 * components)
        .filter(|_| components > 0)
        .ok_or("frame header's components run past it")?;
    let (mut h_max, mut v_max) = (1u32, 1u32);
    for c in specs.chunks_exact(3) {
        h_max = h_max.max((c[1] >> 4) as u32);
        v_max = v_max.max((c[1] & 0x0F) as u32);
    }
    if width == 0 || height == 0 {
        return Err("frame header gives no size".into());
    }
    // A single-component scan is not interleaved: its MCU is one 8×8 block.
    let (mw, mh) = if components == 1 {
        (8, 8)
    } else {
        (8 * h_max, 8 * v_max)
    };
    Ok(width.div_ceil(mw) * height.div_ceil(mh))
}

fn memchr_ff(b: &[u8]) -> Option<usize> {
    b.iter().position(|&x| x == 0xFF)
}

// Annex K, tables K.3–K.6: the code counts per length 1–16 and the symbols.
const STD_DC_LUMA_COUNTS: [u8; 16] = [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0];
const STD_DC_CHROMA_COUNTS: [u8; 16] = [0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0];
const STD_DC_SYMBOLS: [u8; 12] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
const STD_AC_LUMA_COUNTS: [u8; 16] = [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7D];
const STD_AC_CHROMA_COUNTS: [u8; 16] = [0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77];
const STD_AC_LUMA_SYMBOLS: [u8; 162] = [
    0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61, 0x07,
    0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xA1, 0x08, 0x23, 0x42, 0xB1, 0xC1, 0x15, 0x52, 0xD1, 0xF0,
    0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0A, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x25, 0x26, 0x27, 0x28,
    0x29, 0x2A, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49,
    0x4A, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69,
    0x6A, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89,
    0x8A, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7,
    0xA8, 0xA9, 0xAA, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6, 0xB7, 0xB8, 0xB9, 0xBA, 0xC2, 0xC3, 0xC4, 0xC5,
    0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA, 0xE1, 0xE2,
    0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8, 0xE9, 0xEA, 0xF1, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8,
    0xF9, 0xFA,
];
const STD_AC_CHROMA_SYMBOLS: [u8; 162] = [
    0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61, 0x71,
    0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xA1, 0xB1, 0xC1, 0x09, 0x23, 0x33, 0x52, 0xF0,
    0x15, 0x62, 0x72, 0xD1, 0x0A, 0x16, 0x24, 0x34, 0xE1, 0x25, 0xF1, 0x17, 0x18, 0x19, 0x1A, 0x26,
    0x27, 0x28, 0x29, 0x2A, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48,
    0x49, 0x4A, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68,
    0x69, 0x6A, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87,
    0x88, 0x89, 0x8A, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0xA2, 0xA3, 0xA4, 0xA5,
    0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6, 0xB7, 0xB8, 0xB9, 0xBA, 0xC2, 0xC3,
    0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA,
    0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8, 0xE9, 0xEA, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8,
    0xF9, 0xFA,
];

#[cfg(test)]
mod tests;
