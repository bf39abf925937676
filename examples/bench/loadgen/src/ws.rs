//! Just enough RFC 6455 for the kit: frame headers, client masking, incremental parsing.

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Appends an unmasked (server) frame with FIN set.
pub fn server_frame(opcode: u8, payload: &[u8], out: &mut Vec<u8>) {
    header(opcode, payload.len(), false, out);
    out.extend_from_slice(payload);
}

/// Appends a masked (client) frame with FIN set. The mask is fixed: the kit measures
/// servers, not masking entropy, and servers must accept any mask.
pub fn client_frame(opcode: u8, payload: &[u8], out: &mut Vec<u8>) {
    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
    header(opcode, payload.len(), true, out);
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i & 3]));
}

fn header(opcode: u8, len: usize, masked: bool, out: &mut Vec<u8>) {
    let m = if masked { 0x80 } else { 0 };
    out.push(0x80 | opcode);
    if len < 126 {
        out.push(m | len as u8);
    } else if len <= 0xffff {
        out.push(m | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(m | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

/// One parsed frame: where its payload lies in the buffer and how long it is in total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    pub payload_start: usize,
    pub payload_len: usize,
}

impl Frame {
    pub fn end(&self) -> usize {
        self.payload_start + self.payload_len
    }
}

/// Parses the frame at the start of `buf`; `Ok(None)` if more bytes are needed.
pub fn parse(buf: &[u8], max_len: usize) -> Result<Option<Frame>, &'static str> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let fin = buf[0] & 0x80 != 0;
    let opcode = buf[0] & 0x0f;
    let masked = buf[1] & 0x80 != 0;
    let len7 = (buf[1] & 0x7f) as usize;
    let mut pos = 2;
    let len = match len7 {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            pos = 4;
            u16::from_be_bytes([buf[2], buf[3]]) as usize
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            pos = 10;
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            u64::from_be_bytes(b) as usize
        }
        n => n,
    };
    if len > max_len {
        return Err("frame too large");
    }
    let mask = if masked {
        if buf.len() < pos + 4 {
            return Ok(None);
        }
        let m = [buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]];
        pos += 4;
        Some(m)
    } else {
        None
    };
    if buf.len() < pos + len {
        return Ok(None);
    }
    Ok(Some(Frame {
        fin,
        opcode,
        mask,
        payload_start: pos,
        payload_len: len,
    }))
}

/// Unmasks a payload in place.
pub fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// Finds `needle` in `hay` (short needles; a simple first-byte scan is enough here).
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    let first = needle[0];
    let last_start = hay.len() - needle.len();
    let mut i = 0;
    while i <= last_start {
        match hay[i..=last_start].iter().position(|&b| b == first) {
            None => return None,
            Some(off) => {
                let at = i + off;
                if &hay[at..at + needle.len()] == needle {
                    return Some(at);
                }
                i = at + 1;
            }
        }
    }
    None
}

/// Parses the unsigned integer that follows `key` (e.g. `"i":`) in `hay`.
pub fn number_after(hay: &[u8], key: &[u8]) -> Option<u64> {
    let at = find(hay, key)? + key.len();
    let mut v: u64 = 0;
    let mut seen = false;
    for &b in &hay[at..] {
        if b.is_ascii_digit() {
            v = v.wrapping_mul(10).wrapping_add((b - b'0') as u64);
            seen = true;
        } else {
            break;
        }
    }
    seen.then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for len in [0usize, 5, 125, 126, 300, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut buf = Vec::new();
            client_frame(OP_TEXT, &payload, &mut buf);
            let f = parse(&buf, 1 << 20).unwrap().unwrap();
            assert_eq!(f.end(), buf.len());
            let mut p = buf[f.payload_start..f.end()].to_vec();
            unmask(&mut p, f.mask.unwrap());
            assert_eq!(p, payload);
            assert_eq!(parse(&buf[..buf.len() - 1], 1 << 20).unwrap(), None);
            let mut s = Vec::new();
            server_frame(OP_TEXT, &payload, &mut s);
            let f = parse(&s, 1 << 20).unwrap().unwrap();
            assert_eq!(&s[f.payload_start..f.end()], &payload[..]);
        }
    }

    #[test]
    fn numbers() {
        let m = br#"{"type":"ai_progress","progress":{"t":1790000000000001,"i":42,"pad":"x"}}"#;
        assert_eq!(number_after(m, b"\"t\":"), Some(1790000000000001));
        assert_eq!(number_after(m, b"\"i\":"), Some(42));
        assert_eq!(number_after(m, b"\"q\":"), None);
    }
}
