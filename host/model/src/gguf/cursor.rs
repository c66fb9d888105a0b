//! A bounds-checked little-endian reader over the file's bytes.
//!
//! Every read checks the remaining length first; errors are short descriptions that the caller
//! wraps with the key or tensor being read (so the happy path builds no strings).

/// Reads little-endian values from a byte slice, never past its end.
pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Cursor { bytes, pos: 0 }
    }

    /// Offset of the next byte to read.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes left after the cursor.
    pub(crate) fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: u64) -> Result<&'a [u8], String> {
        if n > self.remaining() {
            return Err(format!(
                "needs {n} bytes at offset {}, but only {} remain",
                self.pos,
                self.remaining()
            ));
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.bytes[start..self.pos])
    }

    /// Fails unless at least `count * unit` bytes remain: called before allocating `count`
    /// elements so that a lying length cannot reserve memory the file does not back.
    pub(crate) fn ensure(&self, count: u64, unit: u64) -> Result<(), String> {
        match count.checked_mul(unit) {
            Some(n) if n <= self.remaining() => Ok(()),
            _ => Err(format!(
                "{count} elements of at least {unit} bytes at offset {}, but only {} bytes remain",
                self.pos,
                self.remaining()
            )),
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let b = self.take(N as u64)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, String> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, String> {
        self.array().map(u16::from_le_bytes)
    }

    pub(crate) fn u32(&mut self) -> Result<u32, String> {
        self.array().map(u32::from_le_bytes)
    }

    pub(crate) fn u64(&mut self) -> Result<u64, String> {
        self.array().map(u64::from_le_bytes)
    }

    /// A GGUF string: u64 byte length, then UTF-8 bytes (no terminator). `cap` bounds the length.
    pub(crate) fn string(&mut self, cap: u64) -> Result<String, String> {
        let at = self.pos;
        let len = self.u64()?;
        if len > cap {
            return Err(format!(
                "string at offset {at} has length {len}, over the cap of {cap}"
            ));
        }
        let bytes = self
            .take(len)
            .map_err(|e| format!("string at offset {at} of length {len} runs past the end: {e}"))?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => Err(format!("string at offset {at} is not valid UTF-8: {e}")),
        }
    }
}
