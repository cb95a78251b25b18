//! Entropy coding of the JPEG encoder (`jpeg_planar`): the typical Huffman tables of
//! ITU T.81 Annex K.3, and the bit writer that turns quantised blocks into scan bytes
//! (0xFF stuffed, no restart markers).

/// One Huffman table as written in DHT (`bits`, `values`) and as used to encode:
/// for each symbol, its code left of the length in one word (`code << 8 | length`).
pub struct HuffmanTable {
    pub bits: &'static [u8; 16],
    pub values: &'static [u8],
    codes: [u32; 256],
}

impl HuffmanTable {
    /// Builds the codes of T.81 Annex C (canonical: shorter codes first, in `values` order).
    const fn new(bits: &'static [u8; 16], values: &'static [u8]) -> HuffmanTable {
        let mut codes = [0u32; 256];
        let mut code = 0u32;
        let mut k = 0;
        let mut len = 1;
        while len <= 16 {
            let mut n = 0;
            while n < bits[len - 1] {
                codes[values[k] as usize] = code << 8 | len as u32;
                code += 1;
                k += 1;
                n += 1;
            }
            code <<= 1;
            len += 1;
        }
        HuffmanTable {
            bits,
            values,
            codes,
        }
    }
}

pub static LUMA_DC: HuffmanTable = HuffmanTable::new(
    &[0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0],
    &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
);

pub static CHROMA_DC: HuffmanTable = HuffmanTable::new(
    &[0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0],
    &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
);

pub static LUMA_AC: HuffmanTable = HuffmanTable::new(
    &[0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7D],
    &[
        0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61,
        0x07, 0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xA1, 0x08, 0x23, 0x42, 0xB1, 0xC1, 0x15, 0x52,
        0xD1, 0xF0, 0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0A, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x25,
        0x26, 0x27, 0x28, 0x29, 0x2A, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A, 0x43, 0x44, 0x45,
        0x46, 0x47, 0x48, 0x49, 0x4A, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x63, 0x64,
        0x65, 0x66, 0x67, 0x68, 0x69, 0x6A, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A, 0x83,
        0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99,
        0x9A, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6,
        0xB7, 0xB8, 0xB9, 0xBA, 0xC2, 0xC3, 0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xD2, 0xD3,
        0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA, 0xE1, 0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8,
        0xE9, 0xEA, 0xF1, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8, 0xF9, 0xFA,
    ],
);

pub static CHROMA_AC: HuffmanTable = HuffmanTable::new(
    &[0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77],
    &[
        0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61,
        0x71, 0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xA1, 0xB1, 0xC1, 0x09, 0x23, 0x33,
        0x52, 0xF0, 0x15, 0x62, 0x72, 0xD1, 0x0A, 0x16, 0x24, 0x34, 0xE1, 0x25, 0xF1, 0x17, 0x18,
        0x19, 0x1A, 0x26, 0x27, 0x28, 0x29, 0x2A, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A, 0x43, 0x44,
        0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x63,
        0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6A, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A,
        0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97,
        0x98, 0x99, 0x9A, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xB2, 0xB3, 0xB4,
        0xB5, 0xB6, 0xB7, 0xB8, 0xB9, 0xBA, 0xC2, 0xC3, 0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xCA,
        0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA, 0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7,
        0xE8, 0xE9, 0xEA, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8, 0xF9, 0xFA,
    ],
);

/// Symbols of the AC tables with a meaning of their own: end of block, 16 zeros.
const EOB: usize = 0x00;
const ZRL: usize = 0xF0;

/// Bytes of scan a `BitWriter` gathers before it appends them to its output.
const STAGING: usize = 8 * 1024;

/// Most bytes one block can add to the staging buffer: a DC code and its bits (≤ 27 bits),
/// 63 AC codes with their bits (≤ 26 each), 3 ZRL (11 each) and an EOB (≤ 4) make at most
/// 213 bytes, twice that if every byte were 0xFF and stuffed, plus the word in progress.
const BLOCK_MOST: usize = 2 * (27 + 63 * 26 + 3 * 11 + 4usize).div_ceil(8) + 16;

/// Appends entropy-coded bits to a JPEG scan: a 64-bit accumulator emptied eight bytes at
/// a time, each 0xFF byte followed by a stuffed 0x00 (T.81 F.1.2.3), into a staging
/// buffer that goes to the output once it could not hold another block (appending each
/// word to the `Vec` itself cost a call and a capacity check per eight bytes).
pub struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    staging: [u8; STAGING],
    /// Bytes used in `staging`.
    staged: usize,
    /// Bits not yet written, right-aligned; only the low `64 - free` bits count.
    acc: u64,
    /// Bits still free in `acc`, 1..=64.
    free: u32,
}

impl<'a> BitWriter<'a> {
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        BitWriter {
            out,
            staging: [0; STAGING],
            staged: 0,
            acc: 0,
            free: 64,
        }
    }

    /// Appends the staged bytes to the output.
    fn flush_staging(&mut self) {
        self.out.extend_from_slice(&self.staging[..self.staged]);
        self.staged = 0;
    }

    /// Appends the low `len` bits of `bits` (len ≤ 32; higher bits must be zero).
    #[inline(always)]
    fn put(&mut self, bits: u32, len: u32) {
        if len < self.free {
            self.acc = (self.acc << len) | bits as u64;
            self.free -= len;
        } else {
            let rest = len - self.free;
            let word = (self.acc << self.free) | (bits as u64 >> rest);
            self.emit(word);
            // The bits above `rest` are shifted out before they are ever written.
            self.acc = bits as u64;
            self.free = 64 - rest;
        }
    }

    #[inline(always)]
    fn emit(&mut self, word: u64) {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGH: u64 = 0x8080_8080_8080_8080;
        let inverted = !word;
        // Whether some byte of `word` is 0xFF, i.e. some byte of `inverted` is zero.
        let at = self.staged;
        if inverted.wrapping_sub(ONES) & !inverted & HIGH == 0 {
            self.staging[at..at + 8].copy_from_slice(&word.to_be_bytes());
            self.staged = at + 8;
        } else {
            let mut at = at;
            for byte in word.to_be_bytes() {
                self.staging[at] = byte;
                at += 1;
                if byte == 0xFF {
                    self.staging[at] = 0;
                    at += 1;
                }
            }
            self.staged = at;
        }
    }

    /// Encodes one block: `coefs` quantised in the order `position` maps zigzag indices
    /// to, `nonzero` with bit k set where zigzag coefficient k is not zero, `dc_pred` the
    /// component's previous DC (updated).
    #[inline(always)]
    pub fn block(
        &mut self,
        coefs: &[i32; 64],
        position: &[u8; 64],
        nonzero: u64,
        dc_pred: &mut i32,
        dc: &HuffmanTable,
        ac: &HuffmanTable,
    ) {
        if self.staged > STAGING - BLOCK_MOST {
            self.flush_staging();
        }
        let value = coefs[position[0] as usize];
        let (size, bits) = magnitude(value - *dc_pred);
        *dc_pred = value;
        let code = dc.codes[size as usize];
        self.put((code >> 8) << size | bits, (code & 0xFF) + size);

        let mut rest = nonzero & !1;
        let mut last = 0u32;
        while rest != 0 {
            let k = rest.trailing_zeros();
            rest &= rest - 1;
            let mut run = k - last - 1;
            last = k;
            while run >= 16 {
                let code = ac.codes[ZRL];
                self.put(code >> 8, code & 0xFF);
                run -= 16;
            }
            let (size, bits) = magnitude(coefs[position[k as usize] as usize]);
            let code = ac.codes[(run << 4 | size) as usize];
            self.put((code >> 8) << size | bits, (code & 0xFF) + size);
        }
        if last != 63 {
            let code = ac.codes[EOB];
            self.put(code >> 8, code & 0xFF);
        }
    }

    /// Pads the last byte with 1 bits (T.81 F.1.2.3) and writes what is left.
    pub fn finish(mut self) {
        self.flush_staging();
        let used = 64 - self.free;
        let pad = (8 - used % 8) % 8;
        let bits = used + pad;
        let acc = (self.acc << pad) | ((1u64 << pad) - 1);
        for i in (0..bits / 8).rev() {
            let byte = (acc >> (8 * i)) as u8;
            self.out.push(byte);
            if byte == 0xFF {
                self.out.push(0);
            }
        }
    }
}

/// A coefficient's size category and its magnitude bits (T.81 F.1.2.1: negative values
/// as the one's complement of their absolute value).
#[inline(always)]
fn magnitude(value: i32) -> (u32, u32) {
    let size = 32 - value.unsigned_abs().leading_zeros();
    let bits = (value + (value >> 31)) as u32 & ((1u32 << size) - 1);
    (size, bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_canonical() {
        // T.81 Table K.3: DC luma category 0 is `00`, 1 is `010`, 11 is `111111110`.
        assert_eq!(LUMA_DC.codes[0], 2); // `00`, length 2
        assert_eq!(LUMA_DC.codes[1], 0b010 << 8 | 3);
        assert_eq!(LUMA_DC.codes[11], 0b1_1111_1110 << 8 | 9);
        // Table K.5: AC luma EOB `1010`, ZRL `11111111001`, 0/1 `00`.
        assert_eq!(LUMA_AC.codes[EOB], 0b1010 << 8 | 4);
        assert_eq!(LUMA_AC.codes[ZRL], 0b111_1111_1001 << 8 | 11);
        assert_eq!(LUMA_AC.codes[0x01], 2); // `00`, length 2
    }

    #[test]
    fn magnitudes() {
        assert_eq!(magnitude(0), (0, 0));
        assert_eq!(magnitude(1), (1, 1));
        assert_eq!(magnitude(-1), (1, 0));
        assert_eq!(magnitude(-3), (2, 0b00));
        assert_eq!(magnitude(5), (3, 0b101));
        assert_eq!(magnitude(-2047), (11, 0));
        assert_eq!(magnitude(2047), (11, 0x7FF));
    }

    #[test]
    fn bits_are_stuffed_and_padded() {
        let mut out = Vec::new();
        let mut w = BitWriter::new(&mut out);
        // 0xFF, then 0x12 spread over puts that cross the accumulator's word boundary.
        for _ in 0..7 {
            w.put(0xAB, 8);
        }
        w.put(0xFF, 8);
        w.put(0x1, 4);
        w.put(0x2, 4);
        w.put(0x3, 2);
        w.finish();
        let mut want = vec![0xAB; 7];
        want.extend([0xFF, 0x00, 0x12, 0b1111_1111, 0x00]);
        assert_eq!(out, want);
    }
}
